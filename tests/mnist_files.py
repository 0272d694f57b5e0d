"""MNIST IDX files written by the tests (the real MNIST is never needed)."""
import gzip
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic (type 0x08, rank), big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """``{split}-images-idx3-ubyte.gz`` and ``{split}-labels-idx1-ubyte.gz`` (split: train or t10k)."""
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        (Path(folder) / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array)))


def glyph_digits(rng: np.random.Generator, count: int, jitter: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Ten synthetic digit classes, ``count`` 28×28 images on dark noise: each class a fixed glyph
    (a random 5×5 pattern of 4-px squares, the same in every call), written at a random offset of up
    to ``jitter`` px. Classes differ by shape, as digits do, not by where they sit in the image."""
    glyphs = np.random.default_rng(1234).random((10, 5, 5)) < 0.45
    glyphs[:, 2, 2] = True  # never empty
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = rng.integers(0, 30, (count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        dy, dx = rng.integers(-jitter, jitter + 1, 2)
        big = np.kron(glyphs[label], np.ones((4, 4), bool))
        image[4 + dy : 24 + dy, 4 + dx : 24 + dx][big] = 230
    return images, labels
