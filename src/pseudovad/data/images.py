"""One-class image data in the CIFAR-10 python format (the LTGPA image variant).

Protocol: one class is normal; training uses only its training images, of which the last
`val_fraction` are held out for validation (model selection on reconstruction loss); the test
set is the whole test batch, the normal class labelled 0 and the other nine 1. CIFAR-10 cannot be
downloaded here: `train.cifar_root` must hold the standard `data_batch_1..5` and `test_batch`
pickles (the folder `cifar-10-batches-py` of the official archive).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pseudovad.errors import DataError

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: CIFAR-10 batch not found (train.cifar_root must hold data_batch_1..5 and test_batch)")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__})") from None
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def load_split(root: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    root = Path(root)
    parts = [_read_batch(root / b) for b in (TRAIN_BATCHES if train else [TEST_BATCH])]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class ImageSet(Dataset):
    """uint8 (N, 3, 32, 32) → float (C, H, W) in [0, 1] (C = 1: luminance), plus a label."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, channels: int = 3,
                 size: tuple[int, int] = (32, 32)):
        self.images, self.labels, self.channels, self.size = images, labels, channels, tuple(size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i].astype(np.float32) / 255.0)
        if self.channels == 1:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        if x.shape[1:] != self.size:
            x = torch.nn.functional.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False)[0]
        return x, int(self.labels[i])


def one_class(root: str | Path, normal_class: int, val_fraction: float, channels: int, size: tuple[int, int]
              ) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train, validation, test) for the one-class protocol; test labels: 1 = anomalous class."""
    x, y = load_split(root, train=True)
    normal = x[y == normal_class]
    if len(normal) == 0:
        raise DataError(f"{root}: no training images of class {normal_class}")
    n_val = int(round(len(normal) * val_fraction))
    tr, va = normal[:len(normal) - n_val], normal[len(normal) - n_val:]
    xt, yt = load_split(root, train=False)
    return (ImageSet(tr, np.zeros(len(tr), np.int64), channels, size),
            ImageSet(va, np.zeros(len(va), np.int64), channels, size),
            ImageSet(xt, (yt != normal_class).astype(np.int64), channels, size))


def write_cifar_like(root: str | Path, per_class_train: int = 20, per_class_test: int = 10, seed: int = 0) -> Path:
    """A small CIFAR-format set of generated images (tests, demos): class c has its own pattern."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        out, labels = [], []
        for c in range(10):
            for _ in range(n):
                phase = rng.uniform(0, 2 * np.pi)
                base = 127 + 90 * np.sin((xx * np.cos(c) + yy * np.sin(c)) * (0.2 + 0.05 * c) + phase)
                img = np.stack([base * (0.6 + 0.04 * c), base, base * (1.0 - 0.04 * c)])
                img = img + rng.normal(0, 8, img.shape)
                out.append(np.clip(img, 0, 255).astype(np.uint8).reshape(-1))
                labels.append(c)
        return np.stack(out), labels

    for i, name in enumerate(TRAIN_BATCHES):
        data, labels = images(max(1, per_class_train // len(TRAIN_BATCHES)))
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    data, labels = images(per_class_test)
    with open(root / TEST_BATCH, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f)
    return root
