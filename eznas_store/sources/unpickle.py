"""A restricted unpickler for the published dataset pickles: numpy arrays and nothing else.

The CIFAR and ImageNet16 files are pickles, and a pickle can name any importable callable
(``os.system``): plain ``pickle.load`` on a tampered data file runs code. This reader
admits only the numpy reconstruction globals (and the latin-1 ``_codecs.encode`` that
Python 3 protocol-2 pickles use for bytes), so a data file can only ever yield data.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from eznas_store.errors import BenchmarkFormatError, DataNotFoundError

__all__ = ["RestrictedUnpickler", "restricted_load"]


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` that Python 3 protocol-2 pickles use for bytes.

    Only the latin-1 round trip pickle itself emits is admitted, so no other codec can be
    reached through a data file.
    """
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise BenchmarkFormatError(
            f"refused _codecs.encode with encoding {encoding!r} in a dataset pickle"
        )
    return text.encode("latin-1")


#: (module, name) a dataset pickle may name → where to find it. ``numpy.core`` is the
#: name numpy < 2 (and the Python 2 CIFAR files) wrote; numpy 2 calls it ``numpy._core``.
_NUMPY_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol-5 arrays
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


def _numpy_global(module: str, name: str) -> Any:
    candidates = [module]
    if module.startswith("numpy.core."):
        candidates.insert(0, "numpy._core." + module[len("numpy.core.") :])
    elif module.startswith("numpy._core."):
        candidates.append("numpy.core." + module[len("numpy._core.") :])
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise BenchmarkFormatError(f"this numpy has no {module}.{name} to rebuild arrays with")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, and nothing else.

    The published CIFAR/ImageNet16 files are pickles; a pickle can name any importable
    callable (``os.system``), so we admit only the numpy reconstruction globals.
    Containers, str, bytes and numbers are pickle opcodes, not globals, and need nothing.
    """

    def __init__(self, file: BinaryIO, *, source: str = "<pickle>") -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_global(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise BenchmarkFormatError(
            f"{self._source}: refused to unpickle global '{module}.{name}'; dataset "
            "pickles may only hold numpy arrays, lists, strings and numbers "
            "(the file is corrupt or not what it claims to be)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise BenchmarkFormatError(
            f"{self._source}: refused a persistent id in a dataset pickle"
        )


def restricted_load(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; dict keys become ``str``.

    ``encoding="bytes"`` (as the CIFAR page prescribes) keeps Python 2 ``str`` values as
    bytes, so array buffers survive intact; bytes dict keys are decoded afterwards.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, source=str(path)).load()
    except BenchmarkFormatError:
        raise
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"dataset file {path} does not exist") from exc
    except Exception as exc:  # truncated or not a pickle at all
        raise BenchmarkFormatError(
            f"{path}: not a readable dataset pickle ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(obj, dict):
        obj = {
            (k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in obj.items()
        }
    return obj
