"""Dataset readers: published formats on generated fixtures, the restricted unpickler,
normalisation constants, seeded batches, and the real CIFAR-10 sample when present."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch
from fixtures_data import (
    SHARED_DATA,
    py2_pickle,
    write_cifar_fixture,
    write_image_folder_fixture,
)

from eznas_store.sources import datasets
from eznas_store.sources.datasets import (
    DATASETS,
    get_spec,
    load_images,
    load_split_tensors,
    locate,
    normalize,
    sample_batch,
)
from eznas_store.sources.unpickle import RestrictedUnpickler, restricted_load
from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    UnknownNameError,
)

CIFAR10_IMAGES = SHARED_DATA / "cifar10-images"


# ------------------------------------------------------------------ specs & constants


@pytest.mark.parametrize(
    ("name", "mean", "std", "classes", "size"),
    [
        ("cifar10", (125.3, 123.0, 113.9), (63.0, 62.1, 66.7), 10, 32),
        ("cifar100", (129.3, 124.1, 112.4), (68.2, 65.4, 70.4), 100, 32),
        ("imagenet16-120", (122.68, 116.66, 104.01), (63.22, 61.26, 65.09), 120, 16),
    ],
)
def test_nb201_normalisation_constants(name, mean, std, classes, size):
    spec = DATASETS[name]
    np.testing.assert_allclose(spec.mean, np.array(mean) / 255, rtol=0, atol=1e-12)
    np.testing.assert_allclose(spec.std, np.array(std) / 255, rtol=0, atol=1e-12)
    assert (spec.num_classes, spec.image_size) == (classes, size)


def test_digits_constants_match_the_data():
    from sklearn.datasets import load_digits

    pixels = np.rint(load_digits().images * 255 / 16).astype(np.uint8) / 255.0
    spec = DATASETS["digits"]
    np.testing.assert_allclose(spec.mean, [pixels.mean()] * 3, atol=1e-4)
    np.testing.assert_allclose(spec.std, [pixels.std()] * 3, atol=1e-4)
    assert (spec.num_classes, spec.image_size) == (10, 8)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="known datasets: cifar10, cifar100"):
        get_spec("mnist")
    assert get_spec("ImageNet16-120").name == "imagenet16-120"


def test_normalize_matches_manual_formula():
    spec = DATASETS["cifar10"]
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = normalize(images, spec=spec)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 32, 32)
    expected = (images / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)


# ------------------------------------------------------------------- pickle formats


@pytest.mark.parametrize("style", ["py2", "py3"])
@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_pickles(tmp_path, style, point_at):
    folder = write_cifar_fixture(tmp_path, kind="cifar10", n=6, seed=1, style=style)
    root = tmp_path if point_at == "parent" else folder
    assert locate("cifar10", root).kind == "pickle"
    images, labels = load_images("cifar10", root, split="train")
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.shape == (30,)
    first = restricted_load(folder / "data_batch_1")
    assert set(first) >= {"data", "labels", "batch_label"}  # keys normalised to str
    row = first["data"][0]
    # rows hold planar R, G, B planes: pixel (0, 0) is data[0], data[1024], data[2048]
    assert tuple(images[0, 0, 0]) == (row[0], row[1024], row[2048])
    assert tuple(images[0, 0, 1]) == (row[1], row[1025], row[2049])
    np.testing.assert_array_equal(labels[:6], first["labels"])
    test_images, _ = load_images("cifar10", root, split="test")
    assert test_images.shape == (6, 32, 32, 3)


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_cifar100_pickles_use_fine_labels(tmp_path, style):
    folder = write_cifar_fixture(tmp_path, kind="cifar100", n=10, seed=2, style=style)
    images, labels = load_images("cifar100", tmp_path, split="test")
    assert images.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(labels, restricted_load(folder / "test")["fine_labels"])


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_imagenet16_keeps_labels_up_to_120_shifted_to_zero(tmp_path, style):
    folder = write_cifar_fixture(tmp_path, kind="imagenet16", n=20, seed=3, style=style)
    raw = [restricted_load(folder / f"train_data_batch_{i}") for i in range(1, 11)]
    raw_labels = np.concatenate([r["labels"] for r in raw])
    raw_data = np.concatenate([r["data"] for r in raw])
    keep = raw_labels <= 120
    assert 0 < keep.sum() < len(keep)  # the fixture has labels on both sides of 120
    for root in (tmp_path, folder):
        images, labels = load_images("imagenet16-120", root, split="train")
        assert images.shape == (keep.sum(), 16, 16, 3)
        np.testing.assert_array_equal(labels, raw_labels[keep] - 1)
        assert labels.min() >= 0 and labels.max() <= 119
        np.testing.assert_array_equal(
            images, raw_data[keep].reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1)
        )
    val_images, _ = load_images("imagenet16-120", tmp_path, split="test")  # val_data
    assert val_images.shape[1:] == (16, 16, 3)


def test_protocol5_pickle_loads(tmp_path):
    folder = write_cifar_fixture(tmp_path, kind="cifar100", n=4, seed=0)
    entry = {"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0, 1, 2, 3]}
    (folder / "test").write_bytes(pickle.dumps(entry, protocol=5))
    _, labels = load_images("cifar100", folder, split="test")
    assert labels.tolist() == [0, 1, 2, 3]


def test_incomplete_published_folder_names_missing_files(tmp_path):
    folder = write_cifar_fixture(tmp_path, kind="cifar10", n=2)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="incomplete.*data_batch_3"):
        load_images("cifar10", tmp_path, split="train")


def test_wrong_array_shape_is_a_format_error(tmp_path):
    folder = write_cifar_fixture(tmp_path, kind="cifar10", n=2)
    (folder / "test_batch").write_bytes(
        py2_pickle({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    )
    with pytest.raises(BenchmarkFormatError, match=r"test_batch.*shape \(N, 3072\)"):
        load_images("cifar10", folder, split="test")


def test_truncated_pickle_is_a_format_error(tmp_path):
    folder = write_cifar_fixture(tmp_path, kind="cifar10", n=2)
    blob = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BenchmarkFormatError, match="not a readable dataset pickle"):
        load_images("cifar10", folder, split="test")


# --------------------------------------------------------------------- security


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2)
    with pytest.raises(BenchmarkFormatError, match=r"refused to unpickle global '\w+\.system'"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    # and through the dataset loader, with the file named
    folder = write_cifar_fixture(tmp_path, kind="cifar10", n=2)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(BenchmarkFormatError, match="test_batch: refused"):
        load_images("cifar10", tmp_path, split="test")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(X\x04\x00\x00\x001+1tR.",
        b"c__builtin__\ngetattr\n.",
        b"cnumpy\nload\n.",
        b"csubprocess\nPopen\n.",
    ],
)
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(BenchmarkFormatError, match="refused to unpickle global"):
        RestrictedUnpickler(io.BytesIO(payload)).load()


def test_codecs_encode_only_for_latin1():
    ok = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00\xc3\xbfX\x06\x00\x00\x00latin1\x86R."
    assert RestrictedUnpickler(io.BytesIO(ok)).load() == b"\xff"
    bad = ok.replace(b"X\x06\x00\x00\x00latin1", b"X\x05\x00\x00\x00rot13")
    with pytest.raises(BenchmarkFormatError, match="rot13"):
        RestrictedUnpickler(io.BytesIO(bad)).load()


# -------------------------------------------------------------------- image folders


def test_image_folder_sorted_classes_and_files(tmp_path):
    root = write_image_folder_fixture(
        tmp_path / "imgs", classes=("zebra", "ant", "moth"), per_class=3, seed=4
    )
    images, labels = load_images("cifar10", root, split="train")
    assert images.shape == (9, 32, 32, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # ant, moth, zebra
    from PIL import Image

    with Image.open(root / "train" / "moth" / "0002.png") as img:
        np.testing.assert_array_equal(images[5], np.asarray(img))
    assert locate("cifar10", root).kind == "image-folder"


def test_image_folder_under_name_images(tmp_path):
    write_image_folder_fixture(tmp_path / "cifar10-images", per_class=1)
    source = locate("cifar10", tmp_path)
    assert source.kind == "image-folder" and source.path.endswith("cifar10-images")


def test_image_folder_wrong_size_names_file(tmp_path):
    root = write_image_folder_fixture(tmp_path, per_class=1, size=16)
    with pytest.raises(BenchmarkFormatError, match=r"0000\.png: image is 16x16 px.*32x32"):
        load_images("cifar10", root, split="train")
    assert load_images("imagenet16-120", root, split="test")[0].shape == (3, 16, 16, 3)


def test_image_folder_too_many_classes(tmp_path):
    root = write_image_folder_fixture(
        tmp_path, classes=tuple(f"c{i:02d}" for i in range(11)), per_class=1
    )
    with pytest.raises(BenchmarkFormatError, match="11 class folders but cifar10 has 10"):
        load_images("cifar10", root, split="train")


def test_missing_root_and_unrecognised_root(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_images("cifar10", tmp_path / "nope")
    with pytest.raises(DataNotFoundError) as info:
        load_images("cifar100", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "expected cifar-100-python/" in message and "train/<class>/" in message
    with pytest.raises(DataNotFoundError, match="needs a data root"):
        load_images("cifar10", None)


def test_bad_split_is_a_config_error():
    with pytest.raises(ConfigError, match="split must be one of train, test"):
        load_images("digits", None, split="valid")


# ------------------------------------------------------------------ batches & digits


def test_sample_batch_is_seeded_and_without_replacement(tmp_path):
    write_cifar_fixture(tmp_path, kind="cifar10", n=10, seed=5)
    a = sample_batch("cifar10", tmp_path, batch_size=16, seed=7)
    b = sample_batch("cifar10", tmp_path, batch_size=16, seed=7)
    c = sample_batch("cifar10", tmp_path, batch_size=16, seed=8)
    assert torch.equal(a.images, b.images) and np.array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert len(set(a.indices.tolist())) == 16
    images, labels = load_images("cifar10", tmp_path, split="train")
    assert torch.equal(a.images, normalize(images[a.indices], spec=DATASETS["cifar10"]))
    assert a.labels.tolist() == labels[a.indices].tolist()
    assert a.images.shape == (16, 3, 32, 32) and a.images.dtype == torch.float32
    assert a.source.kind == "pickle"


def test_sample_batch_rejects_bad_sizes(tmp_path):
    with pytest.raises(ConfigError, match="exceeds the 359 digits test images"):
        sample_batch("digits", None, batch_size=360, seed=0, split="test")
    with pytest.raises(ConfigError, match="positive integer"):
        sample_batch("digits", None, batch_size=0, seed=0)
    with pytest.raises(ConfigError, match="only 'digits' can be resized"):
        sample_batch("cifar10", tmp_path, batch_size=1, seed=0, image_size=16)


def test_digits_split_is_deterministic_stratified_and_disjoint():
    train_x, train_y = load_images("digits", None, split="train")
    test_x, test_y = load_images("digits", None, split="test")
    assert len(train_y) + len(test_y) == 1797 and len(test_y) == 359
    assert train_x.shape[1:] == (8, 8, 3) and train_x.dtype == np.uint8
    assert np.array_equal(train_x[..., 0], train_x[..., 2])  # grey repeated
    fraction = np.bincount(test_y) / (np.bincount(test_y) + np.bincount(train_y))
    assert np.all(np.abs(fraction - 0.2) < 0.01)
    again_x, _ = load_images("digits", "ignored", split="train")
    assert np.array_equal(train_x, again_x)
    rows = {r.tobytes() for r in train_x}
    assert sum(r.tobytes() in rows for r in test_x) < 10  # only true duplicate images


@pytest.mark.parametrize("size", [8, 16, 32])
def test_digits_batches_and_resize(size):
    batch = sample_batch("digits", None, batch_size=8, seed=0, image_size=size)
    assert batch.images.shape == (8, 3, size, size)
    assert batch.source.kind == "embedded"
    x, y = load_split_tensors("digits", None, split="test", image_size=size)
    assert x.shape == (359, 3, size, size) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    if size == 8:  # normalised by its own statistics: roughly zero mean, unit std
        assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1


def test_load_split_tensors_on_pickles(tmp_path):
    write_cifar_fixture(tmp_path, kind="imagenet16", n=5, seed=0)
    x, y = load_split_tensors("imagenet16-120", tmp_path, split="test")
    assert x.shape[1:] == (3, 16, 16) and len(x) == len(y)
    assert y.dtype == torch.int64


def test_module_has_no_plain_pickle_load():
    source = open(datasets.__file__, encoding="utf-8").read()
    assert "pickle.load(" not in source and "pickle.loads(" not in source


# ---------------------------------------------------------------- real CIFAR-10 sample


@pytest.fixture
def real_cifar10():
    if not CIFAR10_IMAGES.is_dir():
        pytest.skip(
            "cifar10-images not found: this test reads the real CIFAR-10 sample from "
            "../shared/data"
        )
    return CIFAR10_IMAGES


def test_real_cifar10_image_folder(real_cifar10):
    images, labels = load_images("cifar10", real_cifar10, split="train")
    assert images.shape == (2000, 32, 32, 3)
    assert np.bincount(labels).tolist() == [200] * 10
    test_images, _ = load_images("cifar10", real_cifar10.parent, split="test")
    assert test_images.shape == (1000, 32, 32, 3)
    # the NB201 constants describe these pixels (JPEG re-encodings) to within ~1 %
    mean = images.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(mean, DATASETS["cifar10"].mean, atol=0.01)
    batch = sample_batch("cifar10", real_cifar10, batch_size=16, seed=0)
    again = sample_batch("cifar10", real_cifar10.parent, batch_size=16, seed=0)
    assert torch.equal(batch.images, again.images)
    assert abs(float(batch.images.mean())) < 0.5
