"""Data sets, found on disk and checked: CIFAR-10, Fashion-MNIST and a synthetic one.

Where data is looked for, in order: an explicit directory, ``$CNNCONV_DATA``, then the
cache directory ``cnnconv data fetch`` downloads into (``$XDG_CACHE_HOME/cnnconv/data``).
CIFAR-10 is read from the official python-format directory ``cifar-10-batches-py`` (also
torchvision's layout); batches may hold any number of rows. Fashion-MNIST is read from its
four IDX ``.gz`` files, also from Debian's ``dataset-fashion-mnist`` location.

A data set is its splits as uint8 tensors on the host; ``loader`` moves them to the
training device and draws the batches there.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cnnconv.engine.validation import check_choice

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_DIR = "fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# the md5 of each file as published in Fashion-MNIST's README (zalandoresearch/fashion-mnist)
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot")
DATASETS = ("cifar10", "fashion-mnist", "synthetic")


class DataError(RuntimeError):
    """A data set is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Split:
    """Images as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def head(self, count: int | None) -> Split:
        """The first ``count`` samples (all of them for None): CPU-scale subsets."""
        return self if count is None else Split(self.images[:count], self.labels[:count])


@dataclass(frozen=True)
class Dataset:
    """A train and a test split with the per-channel statistics used to normalise them."""

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return c, h, w

    @functools.cached_property
    def mean_std(self) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        pixels = self.train.images.double().div_(255)
        return pixels.mean(dim=(0, 2, 3)).float(), pixels.std(dim=(0, 2, 3)).float()


def cache_dir() -> Path:
    """Where ``cnnconv data fetch`` puts downloads (``$XDG_CACHE_HOME/cnnconv/data``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnconv" / "data"


def candidate_dirs(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """The places searched, in order, each with where it came from."""
    places = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir)))
    if os.environ.get("CNNCONV_DATA"):
        places.append(("$CNNCONV_DATA", Path(os.environ["CNNCONV_DATA"])))
    places.append(("cache", cache_dir()))
    return places


def find_cifar10(data_dir: str | Path | None = None) -> Path:
    """The first ``cifar-10-batches-py`` directory found (a candidate or its child)."""
    for _, place in candidate_dirs(data_dir):
        for root in (place, place / CIFAR10_DIR):
            if (root / "test_batch").exists() or (root / "data_batch_1").exists():
                return root
    searched = ", ".join(f"{how}={path}" for how, path in candidate_dirs(data_dir))
    raise DataError(
        f"CIFAR-10 not found (looked for {CIFAR10_DIR}/ in {searched}). "
        "Run `cnnconv data fetch cifar10`, or pass --data-dir / set CNNCONV_DATA to a "
        f"directory holding {CIFAR10_DIR}/"
    )


def find_fashion_mnist(data_dir: str | Path | None = None) -> Path:
    """The first directory holding the four Fashion-MNIST IDX files."""
    places = [p for _, p in candidate_dirs(data_dir)] + [FASHION_SYSTEM_DIR]
    for place in places:
        for root in (place, place / FASHION_DIR):
            if (root / FASHION_FILES["test"][0]).exists():
                return root
    raise DataError(
        "Fashion-MNIST not found (looked in "
        + ", ".join(map(str, places))
        + "). Run `cnnconv data fetch fashion-mnist`, install Debian's dataset-fashion-mnist, "
        "or point --data-dir / CNNCONV_DATA at a directory holding its four *-ubyte.gz files"
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(
            f"{path} is missing: the CIFAR-10 directory is incomplete. "
            "Re-run `cnnconv data fetch cifar10` or restore the file"
        )
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as error:  # any unpickling failure means the same thing to the user
        raise DataError(
            f"{path} is corrupt ({type(error).__name__}: {error}). "
            "Delete it and re-run `cnnconv data fetch cifar10`"
        ) from error
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: expected uint8 rows of 3072 pixels, got {data.dtype} {data.shape}; "
            "this is not a CIFAR-10 python-format batch"
        )
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images; "
                        "the file is damaged: restore it or re-run `cnnconv data fetch cifar10`")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise DataError(
            f"{path}: row {bad[0]} has label {labels[bad[0]]}, outside 0..9 ({bad.size} such "
            "row(s)); the file is damaged: restore it or re-run `cnnconv data fetch cifar10`"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 from a ``cifar-10-batches-py`` directory (any number of rows per batch)."""
    parts = [_read_cifar_batch(root / name) for name in CIFAR10_TRAIN_FILES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_cifar_batch(root / "test_batch")
    return Dataset(
        "cifar10",
        Split(torch.from_numpy(train_x), torch.from_numpy(train_y)),
        Split(torch.from_numpy(test_x), torch.from_numpy(test_y)),
        CIFAR10_CLASSES,
        str(root),
    )


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
        magic, count = struct.unpack(">II", raw[:8])
        if magic != expected_magic:
            raise ValueError(f"magic number {magic}, expected {expected_magic}")
        if magic == 2051:
            rows, cols = struct.unpack(">II", raw[8:16])
            array = np.frombuffer(raw, np.uint8, count * rows * cols, 16).reshape(count, rows, cols)
        else:
            array = np.frombuffer(raw, np.uint8, count, 8)
    except FileNotFoundError as error:
        raise DataError(f"{path} is missing; reinstall dataset-fashion-mnist") from error
    except (OSError, ValueError, struct.error, EOFError) as error:
        raise DataError(
            f"{path} is corrupt ({error}); reinstall dataset-fashion-mnist or replace the file"
        ) from error
    return array


def load_fashion_mnist(root: Path) -> Dataset:
    """Fashion-MNIST from its IDX files, as 1x28x28 uint8 images."""
    splits = []
    for part in ("train", "test"):
        images, labels = FASHION_FILES[part]
        x = _read_idx(root / images, 2051)[:, None]
        y = _read_idx(root / labels, 2049).astype(np.int64)
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{root / labels}: {y.shape[0]} labels for {x.shape[0]} images")
        splits.append(Split(torch.from_numpy(x.copy()), torch.from_numpy(y)))
    return Dataset("fashion-mnist", splits[0], splits[1], FASHION_CLASSES, str(root))


def synthetic(
    n_train: int = 2048, n_test: int = 512, num_classes: int = 10, image_size: int = 32,
    seed: int = 0,
) -> Dataset:
    """A small deterministic, learnable data set for unit tests (never for claims).

    Each class is a fixed smooth colour pattern (random 4x4 colours, bilinearly enlarged,
    so crops and flips keep it recognisable); images are that pattern plus noise. A network
    learns it in a few dozen steps, so a broken training loop shows.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator)
    patterns = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear")

    def make(n: int) -> Split:
        labels = torch.randint(0, num_classes, (n,), generator=generator)
        noise = torch.rand(n, 3, image_size, image_size, generator=generator)
        pixels = (0.6 * patterns[labels] + 0.4 * noise) * 255
        return Split(pixels.round().to(torch.uint8), labels)

    classes = tuple(f"class{i}" for i in range(num_classes))
    return Dataset("synthetic", make(n_train), make(n_test), classes, f"synthetic(seed={seed})")


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str) -> Dataset:
    if name == "cifar10":
        return load_cifar10(Path(root))
    return load_fashion_mnist(Path(root))


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a data set by name; loaded sets are kept in memory for the process."""
    if name == "cifar10":
        return _load_cached(name, str(find_cifar10(data_dir).resolve()))
    if name == "fashion-mnist":
        return _load_cached(name, str(find_fashion_mnist(data_dir).resolve()))
    check_choice("dataset", name, DATASETS)
    return synthetic()


def _download(url: str, path: Path, md5: str, by_hand: str) -> None:
    """Download ``url`` to ``path`` and check its published md5."""
    try:
        urllib.request.urlretrieve(url, path)
    except OSError as error:
        raise DataError(f"could not download {url} ({error}); without a network, {by_hand}") from error
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != md5:
        raise DataError(f"{path.name} has md5 {digest}, expected {md5}; retry")


def fetch_fashion_mnist(dest: Path | None = None) -> Path:
    """Download Fashion-MNIST's four files from its official URL and check their md5."""
    target = (dest or cache_dir()) / FASHION_DIR
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        for name, md5 in FASHION_MD5.items():
            _download(FASHION_URL + name, Path(tmp) / name, md5,
                      f"install Debian's dataset-fashion-mnist or copy the files into {target}")
        for name in FASHION_MD5:
            os.replace(Path(tmp) / name, target / name)
    return target


def fetch_cifar10(dest: Path | None = None) -> Path:
    """Download CIFAR-10 from its official URL, check the official md5, and unpack it."""
    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        _download(CIFAR10_URL, archive, CIFAR10_MD5, f"copy {CIFAR10_DIR}/ into {dest} by hand")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        target = dest / CIFAR10_DIR
        if target.exists():
            raise DataError(f"{target} already exists; remove it to fetch again")
        os.replace(Path(tmp) / CIFAR10_DIR, target)
    return target
