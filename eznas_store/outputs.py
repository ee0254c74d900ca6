"""What every command's output files share: atomic writes, ownership, one writer, JSON, figures.

Every result file (tables, reports, checkpoints, plots) is written whole or not at all:
a job killed mid-write leaves the previous file, never half of a new one. Plots use
matplotlib's object API on the Agg canvas (no ``pyplot``), so writing one needs no
display and leaves the caller's backend alone.

Ownership: a folder a command makes is marked (:data:`MARKER`, naming the command and the
entries it wrote), and an overwrite (``--fresh``) deletes only those entries of a folder
marked by the same command; anything else is refused in one line. One writer: every output
that can be continued (a store, a proxy table, a run, a study) is written under
:func:`exclusive`, a kernel lock (``flock``) on ``<output>.lock`` beside it that a killed
process gives back by itself; a second writer is refused in one line naming the holder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import math
import os
import platform
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store._version import __version__
from eznas_store.errors import OutputError

__all__ = ["MARKER", "claim_outputs", "ensure_dir", "exclusive", "figure", "json_safe", "mark_owned", "package_versions", "png",
           "remove_owned", "write_atomic"]


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


# ----------------------------------------------------------------------------- ownership

#: the file in a folder a command made, naming the command and what it wrote there
MARKER = ".eznas-output.json"


def mark_owned(folder: str | os.PathLike[str], command: str, entries: Iterable[str]) -> Path:
    """Record in ``folder`` that ``command`` made it and wrote ``entries`` (names inside it), so a
    later ``--fresh`` may delete exactly those. Entries already recorded are kept."""
    folder = ensure_dir(folder)
    known = _marker(folder)
    names = sorted(set(known.get("entries", [])) | set(entries)) if known.get("command") == command else sorted(set(entries))
    return write_atomic(folder / MARKER, json.dumps({"command": command, "entries": names}, indent=1) + "\n")


def _marker(folder: Path) -> dict:
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = (isinstance(doc, dict) and isinstance(doc.get("command"), str) and isinstance(doc.get("entries"), list)
          and all(isinstance(e, str) for e in doc["entries"]))
    return doc if ok else {}


def claim_outputs(folder: str | os.PathLike[str], command: str, entries: Iterable[str], *,
                  made_before_markers: str | None = None) -> Path:
    """Make ``folder`` the output of ``command``, which will write ``entries`` into it: refused in
    one line (before any work) if another command marked it, or if one of ``entries`` is there
    in a folder ``command`` never marked (a file of the user's it would overwrite).
    ``made_before_markers``: an entry whose presence shows an output of ``command`` written
    before this version marked its folders (it is adopted, so a rerun can continue it)."""
    entries = list(entries)
    folder = ensure_dir(folder)
    doc = _marker(folder)
    if doc and doc.get("command") != command:
        raise OutputError(f"{folder} holds the output of eznas-store {doc['command']}, not {command}: "
                          "choose another --out")
    if not doc and not (made_before_markers and (folder / made_before_markers).is_file()):
        taken = sorted(e for e in entries if (folder / e).exists())
        if taken:
            raise OutputError(f"{folder} already holds {', '.join(taken)}, which eznas-store {command} did not "
                              "write: move them or choose another --out")
    return mark_owned(folder, command, entries)


def remove_owned(folder: str | os.PathLike[str], command: str) -> list[str]:
    """Delete what ``command`` wrote into ``folder`` (by its :data:`MARKER`), nothing else; the
    names deleted. A missing or empty folder is fine; a folder ``command`` did not mark is refused
    with one line, before anything is deleted."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return []
    if not folder.is_dir() or folder.is_symlink():
        raise OutputError(f"--fresh refuses to delete {folder}: it is not a folder eznas-store {command} made")
    doc = _marker(folder)
    others = [p.name for p in folder.iterdir()]
    if doc.get("command") != command:
        if not others:
            return []
        raise OutputError(f"--fresh refuses to delete {folder}: eznas-store {command} did not make it (no {MARKER} "
                          f"of {command} in it); delete it yourself or choose another --out")
    removed = []
    for name in doc["entries"]:
        p = folder / name
        if os.sep in name or name in ("", ".", "..") or not (p.exists() or p.is_symlink()):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(name)
    (folder / MARKER).unlink(missing_ok=True)
    return removed


# ----------------------------------------------------------------------------- one writer


def lock_path(output: str | os.PathLike[str]) -> Path:
    """``<output>.lock`` beside ``output`` (a file or folder), where :func:`exclusive` locks it."""
    output = Path(os.path.abspath(output))
    return output.parent / f"{output.name}.lock"


@contextlib.contextmanager
def exclusive(output: str | os.PathLike[str], what: str = "output") -> Iterator[Path]:
    """Hold the one-writer lock of ``output`` for the ``with`` block; refuse at once (one line,
    naming the holder) if another process holds it. Remote URLs (``scheme://``) are not locked.

    ``flock`` is released by the kernel when its process dies, so ``kill -9`` leaves no stale
    lock; the lock file is removed on a clean exit.
    """
    if "://" in str(output):
        yield Path(str(output))
        return
    import fcntl

    path = lock_path(output)
    if not path.parent.is_dir():
        raise OutputError(f"{what} {output} cannot be written: {path.parent} is not a folder")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot lock {what} {output}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputError(f"{what} {output} is being written by another eznas-store ({holder}); wait for it "
                              f"or stop it (a killed writer frees {path.name} by itself)") from None
        try:  # the file we locked must still be the one at ``path`` (a releaser may have unlinked it)
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:4]))}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _holder(fd: int) -> str:
    """Who holds a lock, from what it wrote into the lock file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"
