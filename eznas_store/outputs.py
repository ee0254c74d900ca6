"""What every command's output files share: atomic writes, JSON without NaN, Agg figures.

Every result file (tables, reports, checkpoints, plots) is written whole or not at all:
a job killed mid-write leaves the previous file, never half of a new one. Plots use
matplotlib's object API on the Agg canvas (no ``pyplot``), so writing one needs no
display and leaves the caller's backend alone.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["figure", "json_safe", "png", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf as ``None`` and numpy scalars/arrays as plain Python, so
    ``json.dumps(..., allow_nan=False)`` writes standard JSON."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def figure(width: float, height: float, *, dpi: float = 120) -> Any:
    """A matplotlib figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Any, *, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, without a creation-software stamp (same plot, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()
