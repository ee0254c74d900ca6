"""Write small data fixtures in the datasets' published on-disk formats.

The real CIFAR files are Python 2 protocol-2 pickles (``str`` keys and array buffers come
back as bytes under ``encoding="bytes"``); Python 3 cannot write those with ``pickle``,
so :func:`py2_pickle` emits the same opcodes by hand. ``style="py3"`` writes what a
Python 3 tool would (str keys, numpy 2's own reduce), so both paths are exercised.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_LAYOUT = {
    # kind: (folder, train files, test files, label key, image size)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        32,
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 32),
    "imagenet16": (
        "ImageNet16",
        [f"train_data_batch_{i}" for i in range(1, 11)],
        ["val_data"],
        "labels",
        16,
    ),
}


def _py2_str(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(data)) + data  # BINSTRING


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    return b"J" + struct.pack("<i", value)


def _py2_array(array: np.ndarray) -> bytes:
    """numpy 1.x under Python 2: _reconstruct(ndarray, (0,), 'b') + __setstate__."""
    assert array.dtype == np.uint8
    out = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
    out += _py2_int(0) + b"\x85" + _py2_str(b"b") + b"\x87R"
    out += b"(" + _py2_int(1)
    out += b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    out += b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
    out += b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) * 2 + _py2_int(0)
    out += b"tb"  # dtype state
    out += b"\x89" + _py2_str(np.ascontiguousarray(array).tobytes()) + b"tb"
    return out


def py2_pickle(entry: dict[str, object]) -> bytes:
    """A Python 2 cPickle (protocol 2) of a dict of uint8 arrays, int lists and str."""
    out = b"\x80\x02}("
    for key, value in entry.items():
        out += _py2_str(key.encode())
        if isinstance(value, np.ndarray):
            out += _py2_array(value)
        elif isinstance(value, list):
            out += b"](" + b"".join(_py2_int(int(v)) for v in value) + b"e"
        else:
            out += _py2_str(str(value).encode())
    return out + b"u."


def cifar_like_arrays(
    *, n: int, size: int, num_labels: int, seed: int, label_offset: int = 0
) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3 * size * size), dtype=np.uint8)
    labels = (rng.integers(0, num_labels, size=n) + label_offset).tolist()
    return data, labels


def write_cifar_fixture(
    root: str | Path,
    *,
    kind: str = "cifar10",
    n: int = 8,
    seed: int = 0,
    style: str | None = None,
) -> Path:
    """Write every file of a published folder under ``root``; ``n`` images per file.

    ``imagenet16`` labels are 1-based over 1..200 (so some fall outside the 120 kept).
    Returns the published folder. Default style: py2 for CIFAR, py3 for ImageNet16.
    """
    folder_name, train, test, label_key, size = _LAYOUT[kind]
    style = style or ("py3" if kind == "imagenet16" else "py2")
    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    num_labels = {"cifar10": 10, "cifar100": 100, "imagenet16": 200}[kind]
    for k, name in enumerate(train + test):
        data, labels = cifar_like_arrays(
            n=n,
            size=size,
            num_labels=num_labels,
            seed=seed * 1000 + k,
            label_offset=1 if kind == "imagenet16" else 0,
        )
        entry: dict[str, object] = {"data": data, label_key: labels}
        if kind == "cifar100":
            entry["coarse_labels"] = [v // 5 for v in labels]
        entry["batch_label"] = f"fixture {name}"
        if style == "py2":
            (folder / name).write_bytes(py2_pickle(entry))
        else:
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f, protocol=4)
    return folder


def write_image_folder_fixture(
    root: str | Path,
    *,
    classes: tuple[str, ...] = ("cat", "dog", "frog"),
    per_class: int = 3,
    size: int = 32,
    seed: int = 0,
    suffix: str = ".png",
    splits: tuple[str, ...] = ("train", "test"),
) -> Path:
    """``root/{train,test}/<class>/NNNN<suffix>`` with random RGB images; returns root."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in splits:
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(d / f"{i:04d}{suffix}")
    return root


def write_darts_csv(path: Path, n: int = 5, seed: int = 0) -> Path:
    """A header-less (quoted genotype, valid_acc %) CSV of ``n`` distinct random DARTS
    genotypes, laid out like SWAP's ``darts_1000_cifar10_valid.csv``."""
    import csv

    from eznas_store.sources.spaces import darts_genotype

    rng = np.random.default_rng(seed)
    cells: list[str] = []
    while len(cells) < n:
        g = darts_genotype.random_cell(rng)
        if g not in cells:
            cells.append(g)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        for g, acc in zip(cells, rng.uniform(60, 86, n)):
            w.writerow([g, f"{acc:.2f}"])
    return path


def darts_csv_cells(path: Path) -> list[str]:
    """The genotypes of a :func:`write_darts_csv` file, in order."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [row[0] for row in csv.reader(f)]

