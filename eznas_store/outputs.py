"""What every command's output files share: atomic writes, JSON without NaN, Agg figures.

Every result file (tables, reports, checkpoints, plots) is written whole or not at all:
a job killed mid-write leaves the previous file, never half of a new one. Plots use
matplotlib's object API on the Agg canvas (no ``pyplot``), so writing one needs no
display and leaves the caller's backend alone.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import math
import os
import platform
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store._version import __version__
from eznas_store.errors import OutputError

__all__ = ["ensure_dir", "figure", "json_safe", "package_versions", "png", "write_atomic"]


def ensure_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """``path`` as an existing folder (made if missing); one-line error if it is a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise OutputError(f"{what} {path} cannot be made: {p} is a file, not a folder")
        if p.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{what} {path} cannot be made: {e.strerror or e}") from None
    return path


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file and a rename.

    The file gets the permissions ``open()`` would give (0666 less the umask), so a
    colleague on a shared cluster can read a report; ``tempfile.mkstemp`` would make it
    owner-only.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except IsADirectoryError:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: it is a folder") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def package_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that fix the numbers, for run records."""
    out = {"python": platform.python_version(), "eznas-store": __version__}
    for p in ("torch", "zarr", "numpy", "xarray", "dask", "numcodecs"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[p] = importlib.metadata.version(p)
    return out


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
