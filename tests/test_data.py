import gzip
import pickle
import shutil
import struct
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnconv.engine import datasets as data
from cnnconv.engine.datasets import DataError
from cnnconv.engine.loader import DeviceLoader


def test_exact_pixel_subset_loads_with_short_batches(mini_cifar_dir):
    dataset = data.load_cifar10(mini_cifar_dir)
    assert len(dataset.train) == 5170 and len(dataset.test) == 1017
    assert dataset.train.images.dtype == torch.uint8
    assert dataset.train.images.shape[1:] == (3, 32, 32)
    assert dataset.train.labels.dtype == torch.int64
    assert set(dataset.train.labels.tolist()) == set(range(10))


def test_full_cifar10_has_the_official_sizes(cifar_dir):
    dataset = data.load_cifar10(cifar_dir)
    assert (len(dataset.train), len(dataset.test)) == (50_000, 10_000)
    assert torch.bincount(dataset.test.labels).tolist() == [1000] * 10


def _copy(src, tmp_path):
    target = tmp_path / "cifar-10-batches-py"
    shutil.copytree(src, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def test_a_truncated_batch_is_named_with_the_fix(mini_cifar_dir, tmp_path):
    root = _copy(mini_cifar_dir, tmp_path)
    blob = (root / "data_batch_3").read_bytes()
    (root / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt .*cnnconv data fetch cifar10"):
        data.load_cifar10(root)


def test_a_missing_batch_is_named(mini_cifar_dir, tmp_path):
    root = _copy(mini_cifar_dir, tmp_path)
    (root / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        data.load_cifar10(root)


def test_wrong_shapes_are_rejected(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    bad = {"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}
    for name in (*data.CIFAR10_TRAIN_FILES, "test_batch"):
        (root / name).write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match="expected uint8 rows of 3072 pixels"):
        data.load_cifar10(root)


@pytest.mark.parametrize("labels,message", [
    ([0, 1, 12, 3], r"data_batch_1: row 2 has label 12, outside 0\.\.9 \(1 such row"),
    ([0, -1, 2, 10], r"data_batch_1: row 1 has label -1, outside 0\.\.9 \(2 such row"),
    ([0, 1, 2], r"data_batch_1: 3 labels for 4 images"),
])
def test_a_bad_label_names_its_row(tmp_path, labels, message):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batch = {"data": np.zeros((4, 3072), np.uint8), "labels": labels}
    for name in (*data.CIFAR10_TRAIN_FILES, "test_batch"):
        (root / name).write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=message):
        data.load_cifar10(root)


def test_search_order_explicit_then_env_then_cache(tmp_path, monkeypatch, mini_cifar_dir):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNCONV_DATA", str(mini_cifar_dir.parent))
    assert data.find_cifar10() == mini_cifar_dir.parent / "cifar-10-batches-py"
    assert data.find_cifar10(mini_cifar_dir) == mini_cifar_dir
    monkeypatch.delenv("CNNCONV_DATA")
    with pytest.raises(DataError, match=r"CIFAR-10 not found.*cnnconv data fetch cifar10"):
        data.find_cifar10()


def _write_idx(path, array, magic):
    header = struct.pack(">II", magic, array.shape[0])
    if array.ndim == 3:
        header += struct.pack(">II", *array.shape[1:])
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_fashion_mnist_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("test", 5)):
        images, labels = data.FASHION_FILES[part]
        _write_idx(tmp_path / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 2051)
        _write_idx(tmp_path / labels, rng.integers(0, 10, n, dtype=np.uint8), 2049)
    dataset = data.load_fashion_mnist(data.find_fashion_mnist(tmp_path))
    assert dataset.train.images.shape == (12, 1, 28, 28) and len(dataset.test) == 5
    (tmp_path / data.FASHION_FILES["test"][1]).write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is corrupt"):
        data.load_fashion_mnist(tmp_path)


def test_real_fashion_mnist_when_installed():
    if not (data.FASHION_SYSTEM_DIR / data.FASHION_FILES["test"][0]).exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    dataset = data.load_dataset("fashion-mnist")
    assert (len(dataset.train), len(dataset.test)) == (60_000, 10_000)


def test_synthetic_is_deterministic(tiny):
    again = data.synthetic(n_train=256, n_test=128)
    assert torch.equal(tiny.train.images, again.train.images)


def _loader(split, seed, **kwargs):
    """A one-seed loader whose batches come without the seed dimension."""
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    loader = DeviceLoader(split, mean, std, 32, "cpu", torch.float32, [seed], **kwargs)
    return loader, ((b.images[0], b.labels[0]) for b in loader)


def _batches(split, seed, count, **kwargs):
    return list(islice(_loader(split, seed, **kwargs)[1], count))


def test_same_seed_same_batches_other_seed_other_batches(tiny):
    first = [x for x, _ in _batches(tiny.train, 1, 10)]
    again = [x for x, _ in _batches(tiny.train, 1, 10)]
    other = [x for x, _ in _batches(tiny.train, 2, 10)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_a_seed_gets_the_same_batches_in_any_stack(tiny):
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    stack = DeviceLoader(tiny.train, mean, std, 32, "cpu", torch.float32, [5, 1, 9],
                         augment="crop_flip_reflect_cutout", partners=True)
    alone = DeviceLoader(tiny.train, mean, std, 32, "cpu", torch.float32, [1],
                         augment="crop_flip_reflect_cutout", partners=True)
    for together, single in islice(zip(stack, alone), 12):  # across an epoch boundary
        assert together.images.shape == (3, 32, 3, 32, 32)
        assert torch.equal(together.images[1], single.images[0])
        assert torch.equal(together.partners[1], single.partners[0])
        assert torch.equal(together.partners[1].sort().values, torch.arange(32))


def test_cutout_zeroes_one_square_per_image(tiny):
    cut = _batches(tiny.train, 0, 1, augment="crop_flip_reflect_cutout")[0][0]
    whole = _batches(tiny.train, 0, 1, augment="crop_flip_reflect")[0][0]
    changed = (cut != whole).any(1)  # pixels cutout touched, per image
    for image in changed:
        rows, cols = image.nonzero(as_tuple=True)
        assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8 and len(rows) > 0


def test_exact_accounting_across_epochs(tiny):
    loader, batches = _loader(tiny.train, 0)
    seen = torch.cat([y for _, y in islice(batches, 24)])
    assert loader.iterations == 24 and loader.samples_seen == 24 * 32
    assert loader.epochs == 3.0  # 256 samples / 32 = 8 batches per epoch
    for epoch in range(3):  # each epoch is a permutation of the whole split
        labels = seen[epoch * 256:(epoch + 1) * 256]
        assert torch.equal(labels.sort().values, tiny.train.labels.sort().values)


def test_crop_and_flip_move_pixels_but_keep_statistics(tiny):
    plain = _batches(tiny.train, 0, 1, augment="none")[0][0]
    augmented = _batches(tiny.train, 0, 1)[0][0]
    assert plain.shape == augmented.shape == (32, 3, 32, 32)
    assert not torch.equal(plain, augmented)
    # Every augmented image is a shifted (zero-padded) and possibly mirrored original.
    padded = torch.nn.functional.pad(plain, (4, 4, 4, 4))
    for i in range(4):
        hits = [torch.equal(augmented[i], img[:, dy:dy + 32, dx:dx + 32])
                for img in (padded[i], padded[i].flip(2)) for dy in range(9) for dx in range(9)]
        assert any(hits)


def test_batch_larger_than_split_is_an_error(tiny):
    with pytest.raises(ValueError, match="exceeds the 256 samples"):
        DeviceLoader(tiny.train, torch.zeros(3), torch.ones(3), 512, "cpu", torch.float32, [0])


def test_fashion_mnist_is_fetched_and_checked_against_its_published_md5(tmp_path, monkeypatch):
    import hashlib
    import urllib.request

    from cnnconv.engine import datasets as data_mod

    def fake_download(url, path):
        Path(path).write_bytes(url.encode())
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_download)
    monkeypatch.setattr(data_mod, "FASHION_MD5", {
        name: hashlib.md5((data_mod.FASHION_URL + name).encode()).hexdigest()
        for name in data_mod.FASHION_MD5})
    target = data_mod.fetch_fashion_mnist(tmp_path)
    assert sorted(p.name for p in target.iterdir()) == sorted(data_mod.FASHION_MD5)
    monkeypatch.setitem(data_mod.FASHION_MD5, "t10k-images-idx3-ubyte.gz", "0" * 32)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz has md5 .* expected 0+; retry"):
        data_mod.fetch_fashion_mnist(tmp_path / "again")

    def offline(url, path):
        raise OSError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(DataError, match="without a network, install Debian's dataset-fashion-mnist"):
        data_mod.fetch_fashion_mnist(tmp_path / "offline")
