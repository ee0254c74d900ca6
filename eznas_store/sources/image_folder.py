"""Image folders (``<root>/{train,test}/<class>/*.jpg|png``, classes sorted by name) as uint8 arrays.

Each image's size is read from its header and must be the dataset's own before a pixel is
decoded, so an oversized image (a 20000×20000 decompression bomb) costs a header read and
one error line naming it; Pillow's decompression-bomb warning never reaches the user.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from eznas_store.errors import BenchmarkFormatError, DataNotFoundError

__all__ = ["IMAGE_SUFFIXES", "SPLITS", "is_image_folder", "read_image_folder"]

SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})


def _split_dir(root: Path, split: str) -> Path | None:
    names = ("test", "val") if split == "test" else (split,)
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def is_image_folder(root: Path) -> bool:
    if not root.is_dir():
        return False
    for split in SPLITS:
        d = _split_dir(root, split)
        if d is not None and any(p.is_dir() for p in d.iterdir()):
            return True
    return False


def _read_image(file: Path, *, dataset: str, size: int) -> np.ndarray:
    """One image as uint8 ``(S, S, 3)``; its size is checked from the header before any
    pixel is decoded, so an oversized image (a decompression bomb) costs a header read."""
    from PIL import Image  # only image folders need PIL: keeps start-up fast

    try:
        with warnings.catch_warnings():  # Pillow warns above 89 Mpx; we refuse below that
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(file)
        with img:
            if img.size != (size, size):
                raise BenchmarkFormatError(
                    f"{file}: image is {img.size[0]}x{img.size[1]} px but {dataset} "
                    f"images are {size}x{size}"
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError:
        raise BenchmarkFormatError(
            f"{file}: image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels (Pillow's "
            f"decompression-bomb limit) but {dataset} images are {size}x{size}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # SyntaxError: Pillow's "broken PNG"
        if isinstance(exc, BenchmarkFormatError):
            raise
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise BenchmarkFormatError(f"{file}: not a readable image ({why})") from None


def read_image_folder(
    root: Path, *, dataset: str, num_classes: int, image_size: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Every image of ``split`` as uint8 ``(N, S, S, 3)`` and int64 labels (class folders by
    name); an image of another size than ``image_size`` is refused before it is decoded."""
    split_dir = _split_dir(root, split)
    if split_dir is None:
        raise DataNotFoundError(
            f"image folder {root} has no {split}/ folder (expected {split}/<class>/*.jpg)"
        )
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if len(classes) > num_classes:
        raise BenchmarkFormatError(
            f"{split_dir} has {len(classes)} class folders but {dataset} has "
            f"{num_classes} classes"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(
            p
            for p in (split_dir / cls).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        for file in files:
            images.append(_read_image(file, dataset=dataset, size=image_size))
            labels.append(label)
    if not images:
        raise DataNotFoundError(f"{split_dir} holds no .jpg/.jpeg/.png images")
    return np.stack(images), np.asarray(labels, dtype=np.int64)
