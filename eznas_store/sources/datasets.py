"""Image batches for the statistics collector, read from the datasets' published formats.

The D input of docs/design.md §2 must be real images of the task's dataset, normalised exactly as
NAS-Bench-201 trained its networks, or the per-layer statistics describe a different
input distribution from the one the accuracies were measured on. This module reads:

- CIFAR-10 python pickles (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``),
- CIFAR-100 python pickles (``cifar-100-python/train``, ``test``),
- ImageNet16-120 pickles as NAS-Bench-201 uses them (``ImageNet16/train_data_batch_1..10``,
  ``val_data``; labels are 1-based and only labels 1..120 are kept, shifted to 0..119),
- an image folder (``<root>/{train,test}/<class>/*.jpg|png``, classes sorted by name),
- ``digits``: scikit-learn's bundled 8×8 digits, the embedded default that needs no files.

``root`` may be the folder that holds the published folder, the published folder itself,
or an image-folder root (or a folder holding ``<name>-images/``)::

    >>> batch = sample_batch("digits", None, batch_size=16, seed=0)
    >>> batch.images.shape
    torch.Size([16, 3, 8, 8])

Pickles are read with :func:`eznas_store.sources.unpickle.restricted_load`, which only
reconstructs numpy arrays, so a tampered data file cannot run code (plain
``pickle.load`` would), and bounds what it rebuilds; each file's ``data`` must then be a
uint8 array of the published shape and its labels integers in the dataset's range. An
image's size is checked from its header before it is decoded
(:mod:`eznas_store.sources.limits`). Every problem is one error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eznas_store.config import check_seed
from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    UnknownNameError,
)
from eznas_store.sources.image_folder import SPLITS, is_image_folder, read_image_folder
from eznas_store.sources.unpickle import restricted_load

__all__ = [
    "DATASETS",
    "Batch",
    "DataSource",
    "DatasetSpec",
    "get_spec",
    "load_images",
    "load_split_tensors",
    "locate",
    "normalize",
    "sample_batch",
]



@dataclass(frozen=True)
class DatasetSpec:
    """What a network builder and the normaliser need to know about a dataset.

    ``mean``/``std`` are per RGB channel on the [0, 1] scale (pixel / 255).
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _per255(values: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(v / 255 for v in values)  # type: ignore[return-value]


#: Normalisation constants are NAS-Bench-201's own (AutoDL-Projects,
#: ``get_dataset_with_transform.get_datasets``), quoted there on the 0..255 scale.
#: ``digits`` uses mean/std of all 1,797 images after the uint8 conversion below
#: (pixel = round(v * 255 / 16), then / 255), at native 8×8; the three channels are
#: copies of the grey one. ``tests/test_datasets.py`` recomputes them.
DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", 10, 32, _per255((125.3, 123.0, 113.9)), _per255((63.0, 62.1, 66.7))
    ),
    "cifar100": DatasetSpec(
        "cifar100", 100, 32, _per255((129.3, 124.1, 112.4)), _per255((68.2, 65.4, 70.4))
    ),
    "imagenet16-120": DatasetSpec(
        "imagenet16-120",
        120,
        16,
        _per255((122.68, 116.66, 104.01)),
        _per255((63.22, 61.26, 65.09)),
    ),
    "digits": DatasetSpec("digits", 10, 8, (0.3053,) * 3, (0.3759,) * 3),
}

#: published folder names (first one is what we name in messages) and split files
_PUBLISHED: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "cifar10": (
        ("cifar-10-batches-py",),
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    ),
    "cifar100": (("cifar-100-python",), {"train": ("train",), "test": ("test",)}),
    "imagenet16-120": (
        ("ImageNet16", "ImageNet16-120", "imagenet16", "imagenet16-120"),
        {"train": tuple(f"train_data_batch_{i}" for i in range(1, 11)), "test": ("val_data",)},
    ),
}
_LABEL_KEY = {"cifar10": "labels", "cifar100": "fine_labels", "imagenet16-120": "labels"}

#: digits: fraction held out for ``test`` and the seed of the stratified split
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 0


def get_spec(name: str) -> DatasetSpec:
    """Look a dataset up by name (case-insensitive), naming the known ones if absent."""
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise UnknownNameError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}"
        )
    return DATASETS[key]


# --------------------------------------------------------------------------- pickles


#: labels a published file may hold: CIFAR's are 0-based; ImageNet16's are 1-based over all
#: 1000 ImageNet classes (NAS-Bench-201 keeps 1..120)
_IMAGENET16_ALL_CLASSES = 1000


def _label_range(spec: DatasetSpec) -> tuple[int, int]:
    if spec.name == "imagenet16-120":
        return 1, _IMAGENET16_ALL_CLASSES
    return 0, spec.num_classes - 1


def _read_labels(value: object, *, path: Path, key: str, spec: DatasetSpec) -> np.ndarray:
    """The file's labels as int64, each checked to be an integer in the dataset's range."""
    lo, hi = _label_range(spec)
    expected = f"'{key}' must be a list of integers {lo}..{hi} for {spec.name}"
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise BenchmarkFormatError(f"{path}: {expected}, found a {value.dtype} array of shape {value.shape}")
        bad = np.flatnonzero((value < lo) | (value > hi))
        if bad.size:
            raise BenchmarkFormatError(f"{path}: {expected}; item {bad[0]} is {value[bad[0]]}")
        return value.astype(np.int64)
    if not isinstance(value, (list, tuple)):
        raise BenchmarkFormatError(f"{path}: {expected}, found {type(value).__name__}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            shown = repr(v) if isinstance(v, (int, np.integer)) else f"a {type(v).__name__}"
            raise BenchmarkFormatError(f"{path}: {expected}; item {i} is {shown[:40]}")
    return np.asarray(value, dtype=np.int64).reshape(-1)


def _read_pickle_batch(
    path: Path, *, spec: DatasetSpec, label_key: str
) -> tuple[np.ndarray, np.ndarray]:
    entry = restricted_load(path)
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise BenchmarkFormatError(
            f"{path}: expected a dict with 'data' and '{label_key}', found {keys}"
        )
    data = entry["data"]
    size = spec.image_size
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * size * size):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise BenchmarkFormatError(
            f"{path}: 'data' must be a uint8 array of shape (N, {3 * size * size}) for "
            f"{spec.name}, found {found}"
        )
    labels = _read_labels(entry[label_key], path=path, key=label_key, spec=spec)
    if labels.shape[0] != data.shape[0]:
        raise BenchmarkFormatError(
            f"{path}: {data.shape[0]} images but {labels.shape[0]} '{label_key}'"
        )
    # rows are planar R, G, B planes of size×size pixels
    images = data.reshape(-1, 3, size, size).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_published(
    folder: Path, *, spec: DatasetSpec, split: str
) -> tuple[np.ndarray, np.ndarray]:
    _, files = _PUBLISHED[spec.name]
    missing = [f for f in files[split] if not (folder / f).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{folder} is incomplete: {split} split needs {', '.join(missing)}"
        )
    label_key = _LABEL_KEY[spec.name]
    parts = [
        _read_pickle_batch(folder / f, spec=spec, label_key=label_key) for f in files[split]
    ]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if spec.name == "imagenet16-120":
        # NAS-Bench-201 keeps the first 120 classes (1 <= label <= 120), then label - 1
        keep = labels <= spec.num_classes
        images, labels = images[keep], labels[keep] - 1
    return images, labels


# ----------------------------------------------------------------------------- digits


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """8×8 digits as uint8 RGB and a seeded stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits  # heavy, and only digits needs it

    bunch = load_digits()
    grey = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16
    targets = bunch.target.astype(np.int64)
    rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
    is_test = np.zeros(len(targets), dtype=bool)
    for cls in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == cls))
        is_test[members[: int(round(_DIGITS_TEST_FRACTION * len(members)))]] = True
    rows = np.flatnonzero(is_test if split == "test" else ~is_test)
    rgb = np.repeat(grey[rows, :, :, None], 3, axis=3)
    return np.ascontiguousarray(rgb), targets[rows]


# --------------------------------------------------------------------------- locating


@dataclass(frozen=True)
class DataSource:
    """Where a dataset's images were found and in which format (to record with results).

    ``kind`` is ``"pickle"`` (a published CIFAR/ImageNet16 folder), ``"image-folder"``
    or ``"embedded"`` (digits); ``path`` is the folder read, or None for embedded.
    """

    dataset: str
    kind: str
    path: str | None

    def describe(self) -> str:
        return f"{self.dataset} ({self.kind}{': ' + self.path if self.path else ''})"


def _expected_line(spec: DatasetSpec, root: Path) -> str:
    if spec.name in _PUBLISHED:
        folder = _PUBLISHED[spec.name][0][0]
        first = _PUBLISHED[spec.name][1]["train"][0]
        published = f"{folder}/ (with {first} ...) in it or at it, or "
    else:
        published = ""
    return (
        f"no {spec.name} data found at {root}: expected {published}an image folder "
        f"with train/<class>/*.jpg|png (or {spec.name}-images/ holding one); "
        "use dataset 'digits' to run without files"
    )


def locate(name: str, root: str | Path | None) -> DataSource:
    """Find a dataset under ``root``: published folder first, then an image folder.

    Checked in order: ``root/<published>/``, ``root`` itself holding the published files,
    ``root`` as an image-folder root, ``root/<name>-images/``.
    """
    spec = get_spec(name)
    if spec.name == "digits":
        return DataSource(spec.name, "embedded", None)
    if root is None:
        raise DataNotFoundError(
            f"{spec.name} needs a data root (a folder with its published files or an "
            "image folder); use dataset 'digits' to run without files"
        )
    try:
        root = Path(root).expanduser()
        exists = root.exists()
    except (OSError, ValueError, RuntimeError):  # "~nobody", NUL bytes
        exists = False
    if not exists:
        raise DataNotFoundError(f"data root {root} does not exist")
    if spec.name in _PUBLISHED:
        folders, files = _PUBLISHED[spec.name]
        marker = files["train"][0]
        for candidate in [*(root / f for f in folders), root]:
            if (candidate / marker).is_file() or (candidate / files["test"][0]).is_file():
                return DataSource(spec.name, "pickle", str(candidate))
    for candidate in (root, root / f"{spec.name}-images"):
        if is_image_folder(candidate):
            return DataSource(spec.name, "image-folder", str(candidate))
    raise DataNotFoundError(_expected_line(spec, root))


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return split


def _load(
    name: str, root: str | Path | None, *, split: str
) -> tuple[np.ndarray, np.ndarray, DataSource]:
    spec = get_spec(name)
    _check_split(split)
    source = locate(spec.name, root)
    if source.kind == "embedded":
        images, labels = _digits(split)
    elif source.kind == "pickle":
        images, labels = _read_published(Path(source.path), spec=spec, split=split)
    else:
        images, labels = read_image_folder(Path(source.path), dataset=spec.name, num_classes=spec.num_classes,
                                           image_size=spec.image_size, split=split)
    return images, labels, source


def load_images(
    name: str, root: str | Path | None, *, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """All images of one split as uint8 ``(N, H, W, 3)`` plus int64 labels ``(N,)``.

    Row order is the file order (pickle batches in sequence; image folders by class
    folder name, then file name), so an index into it names the same image every run.
    ``root`` is ignored for ``digits``.
    """
    images, labels, _ = _load(name, root, split=split)
    return images, labels


# -------------------------------------------------------------------------- tensors


def normalize(
    images: np.ndarray, *, spec: DatasetSpec, image_size: int | None = None
) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` → float32 ``(N, 3, S, S)``, (x/255 − mean) / std.

    ``image_size`` other than the native size resizes bilinearly (align_corners=False)
    before normalising; only ``digits`` is resized by the loaders below.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    x = x.to(torch.float32) / 255.0
    if image_size is not None and image_size != x.shape[-1]:
        x = torch.nn.functional.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False
        )
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def _resolve_size(spec: DatasetSpec, image_size: int | None) -> int:
    if image_size is None or image_size == spec.image_size:
        return spec.image_size
    if spec.name != "digits":
        raise ConfigError(
            f"{spec.name} is used at its benchmark size {spec.image_size} px; only "
            f"'digits' can be resized (asked for {image_size})"
        )
    if not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, not {image_size!r}")
    return image_size


@dataclass(frozen=True)
class Batch:
    """One seeded batch: normalised images, their labels and row indices in the split.

    ``indices`` index :func:`load_images` of the same ``split``, so the batch can be
    rebuilt or cited; ``source`` says which files it came from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: np.ndarray
    source: DataSource


def sample_batch(
    name: str,
    root: str | Path | None,
    *,
    batch_size: int,
    seed: int,
    split: str = "train",
    image_size: int | None = None,
) -> Batch:
    """A seeded random sample of ``batch_size`` distinct images, normalised.

    ``numpy.random.default_rng(seed).choice(N, batch_size, replace=False)``: the same
    seed and data give the same batch on every machine; no global random state is used.
    ``image_size`` resizes ``digits`` (e.g. 16 or 32 px to mimic the CIFAR geometry).
    """
    spec = get_spec(name)
    size = _resolve_size(spec, image_size)
    seed = check_seed(seed, "seed")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
    images, labels, source = _load(spec.name, root, split=split)
    if batch_size > len(images):
        raise ConfigError(
            f"batch_size {batch_size} exceeds the {len(images)} {spec.name} {split} images"
        )
    indices = np.random.default_rng(seed).choice(len(images), size=batch_size, replace=False)
    indices = indices.astype(np.int64)
    return Batch(
        images=normalize(images[indices], spec=spec, image_size=size),
        labels=torch.from_numpy(labels[indices].copy()),
        indices=indices,
        source=source,
    )


def load_split_tensors(
    name: str,
    root: str | Path | None,
    *,
    split: str,
    image_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as float32 ``(N, 3, S, S)`` normalised images and int64 labels.

    For training networks to produce accuracy labels (the ``label`` command).
    """
    spec = get_spec(name)
    size = _resolve_size(spec, image_size)
    images, labels, _ = _load(spec.name, root, split=split)
    return normalize(images, spec=spec, image_size=size), torch.from_numpy(labels)
