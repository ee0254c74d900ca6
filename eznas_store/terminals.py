"""The 22 EZNAS terminals (DESIGN §2): names, order and what is stored vs derived.

Order is stable: reports, the DEAP primitive set and stores list terminals in it
(program JSON names terminals, it does not index them). ``X`` ranges over the three inputs D (data), N (noise), P (perturbed data).
"""

from __future__ import annotations

INPUTS: tuple[str, ...] = ("D", "N", "P")

#: per-input kinds, in the order they appear in TERMINALS
KINDS: tuple[str, ...] = (
    "wtgrad", "inpact", "inpactgrad", "preact", "preactgrad", "act", "actgrad",
)

TERMINALS: tuple[str, ...] = ("wt",) + tuple(f"{k}_{x}" for k in KINDS for x in INPUTS)
assert len(TERMINALS) == 22

#: which tensor shape family each kind has: weight (Cout,Cin,k,k), block input
#: (B,Cin,H,W) or block output (B,Cout,Ho,Wo)
FAMILY: dict[str, str] = {
    "wt": "weight", "wtgrad": "weight",
    "inpact": "input", "inpactgrad": "input", "preact": "input", "preactgrad": "input",
    "act": "output", "actgrad": "output",
}


def split(name: str) -> tuple[str, str | None]:
    """``"act_D"`` → ``("act", "D")``; ``"wt"`` → ``("wt", None)``."""
    if name == "wt":
        return "wt", None
    kind, _, x = name.rpartition("_")
    return kind, x
