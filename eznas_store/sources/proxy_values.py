"""How proxy values are read as a table: AZ-NAS's rank aggregate and the floors of failed components.

AZ-NAS's score is not a value of one network but a rank aggregate over a set of networks,
and a component that failed (NaN) must still rank lowest when a formula computes with it.
Both halves need these rules, the collector (a search scoring cells one at a time) and the
scorer (formulas over stored values), so they live here, with numpy alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["AZ_COMPONENTS", "AZ_FLOORS", "az_nas_against", "az_nas_aggregate", "floor_failed"]

#: the four components, in the order of the aggregate's sum
AZ_COMPONENTS: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability",
                                  "az_complexity")
#: a finite stand-in for a failed component (the reference's NaN ⇒ −∞), below every finite
#: value the component can take, so a formula over the components can still compute with it
#: and it ranks lowest as in the reference: s_E is a sum of entropies (≥ 0); s_P a minimum
#: of entropy differences (≥ −ln C ≈ −4.2 at NB201's 64 channels); s_T a mean of
#: −σ − 1/(σ + 1e−6) + 2, ≈ −1e6 where σ = 0 (a cell that ignores its input)
AZ_FLOORS: dict[str, float] = {"az_expressivity": -1.0, "az_progressivity": -1e3, "az_trainability": -1e7}


def az_nas_aggregate(values: Mapping[str, Sequence[float] | np.ndarray]) -> np.ndarray:
    """AZ-NAS's score over a set of N networks: s_AZ = Σ_m ln(rank_m / N).

    ``values``: one array per component of :data:`AZ_COMPONENTS` (extra keys ignored), one
    entry per network, as ``compute_all`` stored them. rank_m = ``scipy.stats.rankdata``
    (ascending, ties averaged) of component m, NaN counted as −∞ (the reference's rule: a
    failed component ranks lowest, ties shared). Returns float64 (N,), higher is better.
    """
    missing = [m for m in AZ_COMPONENTS if m not in values]
    if missing:
        raise KeyError(f"az_nas_aggregate needs every component; missing: {', '.join(missing)}")
    cols = [np.asarray(values[m], dtype=np.float64).reshape(-1) for m in AZ_COMPONENTS]
    n = cols[0].size
    if n == 0 or any(c.size != n for c in cols):
        raise ValueError(f"component arrays must be non-empty and equally long: {[c.size for c in cols]}")
    total = np.zeros(n)
    for c in cols:
        total += np.log(rankdata(np.where(np.isnan(c), -np.inf, c)) / n)
    return total


def floor_failed(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``columns`` with every non-finite AZ component (of :data:`AZ_FLOORS`) replaced by its floor.

    Other columns are returned as they are. Why: a formula cannot compute with −∞, and
    leaving the cell out (as for any other failed proxy) drops the pool-heavy cells the
    reference ranks lowest, correctly, which flatters every score on what is left.
    """
    out = dict(columns)
    for name, floor in AZ_FLOORS.items():
        if name in out:
            col = np.asarray(out[name], dtype=np.float64)
            out[name] = np.where(np.isfinite(col), col, floor)
    return out


def az_nas_against(values: Mapping[str, float], reference: Mapping[str, np.ndarray]) -> float:
    """One network's AZ-NAS aggregate ranked against a reference sample of R networks.

    Σ_m ln(r_m / (R + 1)), r_m the 1-based average rank of the network's component m among
    the reference's values and its own (NaN counted as −∞): exactly :func:`az_nas_aggregate`'s
    value for that network over the R + 1 networks, so a search can score cells one at a
    time (the reference aggregate is defined over a whole population).
    """
    both = {m: np.append(np.asarray(reference[m], dtype=np.float64).reshape(-1), float(values[m]))
            for m in AZ_COMPONENTS}
    return float(az_nas_aggregate(both)[-1])
