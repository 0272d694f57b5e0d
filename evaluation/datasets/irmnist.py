"""IR-MNIST (AVID paper, Sec. 4.1): 11×11 grids of 28×28 MNIST digits; the digit 3 is the irregularity.

Training grids never contain a 3 (digits from the MNIST training split). Test grids use the
MNIST test split; so that image-level detection is measurable, half of them contain no 3 (with
uniformly drawn digits nearly every grid would hold one: 0.9^121 ≈ 3·10⁻⁶). The other half, the
positives, come in two constructions (``positives``):

- ``"few"`` (default): one to five 3s at random cells, the rest normal digits. The hard case: the
  grid's evidence is a handful of cells among 121.
- ``"natural"``: every cell drawn from the whole test split, as the paper builds its grids
  ("randomly 121 samples are selected from the MNIST dataset"), so 3s appear at their natural rate
  (about 10 %, 12 per grid); redrawn in the rare grid that holds none.

Ground truth is per cell.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .common import DatasetError

CELL = 28
POSITIVES = ("few", "natural")


@dataclass
class IrMnist:
    train: np.ndarray  # (N, 11·28, 11·28) uint8
    test: np.ndarray  # (M, 11·28, 11·28) uint8
    test_cells: np.ndarray  # (M, 11, 11) bool: the cell holds the irregular digit
    grid: int = 11

    @property
    def test_labels(self) -> np.ndarray:
        return self.test_cells.reshape(len(self.test_cells), -1).any(axis=1)


def tile(digits: np.ndarray, grid: int) -> np.ndarray:
    """``(grid², 28, 28)`` digits → one ``(grid·28, grid·28)`` image, row by row."""
    return digits.reshape(grid, grid, CELL, CELL).transpose(0, 2, 1, 3).reshape(grid * CELL, grid * CELL)


def build_irmnist(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
                  n_train: int = 5000, n_test: int = 1000, grid: int = 11, irregular_digit: int = 3,
                  max_irregular: int = 5, positives: str = "few", seed: int = 0, with_train: bool = True) -> IrMnist:
    """Build the grids from MNIST arrays (``(N, 28, 28)`` uint8 images and their labels).

    The training grids depend only on ``seed`` and ``n_train``: builds that differ in ``positives``
    share them, so one trained model is evaluated on both test constructions. The test grids are
    drawn after them; ``with_train=False`` draws the training grids' digits (so the test grids are
    the same) without tiling them, and returns no training grids (evaluation only).
    """
    if positives not in POSITIVES:
        raise DatasetError(f"unknown IR-MNIST positives {positives!r}: choose from {', '.join(POSITIVES)}")
    if train_images.shape[1:] != (CELL, CELL) or test_images.shape[1:] != (CELL, CELL):
        raise DatasetError(f"IR-MNIST needs 28x28 digits, got {train_images.shape[1:]} and {test_images.shape[1:]}")
    rng = np.random.default_rng(seed)
    cells = grid * grid
    normal_train = np.nonzero(train_labels != irregular_digit)[0]
    normal_test = np.nonzero(test_labels != irregular_digit)[0]
    irregular_test = np.nonzero(test_labels == irregular_digit)[0]
    if len(irregular_test) == 0:
        raise DatasetError(f"the MNIST test split holds no digit {irregular_digit}")
    train_picks = [rng.choice(normal_train, cells) for _ in range(n_train)]
    train = np.stack([tile(train_images[picked], grid) for picked in train_picks]) if with_train \
        else np.empty((0, grid * CELL, grid * CELL), np.uint8)
    test = np.empty((n_test, grid * CELL, grid * CELL), np.uint8)
    truth = np.zeros((n_test, grid, grid), bool)
    for i in range(n_test):
        if i % 2 == 1 and positives == "natural":
            picked = rng.choice(len(test_labels), cells)
            while not (test_labels[picked] == irregular_digit).any():
                picked = rng.choice(len(test_labels), cells)
            chosen = test_images[picked]
            truth[i].flat[:] = test_labels[picked] == irregular_digit
        else:
            chosen = test_images[rng.choice(normal_test, cells)]
        if i % 2 == 1 and positives == "few":
            where = rng.choice(cells, int(rng.integers(1, max_irregular + 1)), replace=False)
            chosen[where] = test_images[rng.choice(irregular_test, len(where))]
            truth[i].flat[where] = True
        test[i] = tile(chosen, grid)
    return IrMnist(train=train, test=test, test_cells=truth, grid=grid)


@dataclass
class IrMnistSpec:
    """``--data irmnist:FOLDER[:grids=N,digit=D,test_grids=M]``: IR-MNIST built from the MNIST IDX
    files in FOLDER (the paper's sizes by default)."""

    folder: str
    grids: int = 5000
    test_grids: int = 1000
    digit: int = 3

    PREFIX = "irmnist:"

    @classmethod
    def parse(cls, spec: str, digit: int = 3, grids: int = 5000) -> "IrMnistSpec":
        """``digit`` and ``grids``: when the spec names none (``occ eval`` passes the model's: the test
        grids are drawn after the training grids, so the same count gives the same test grids)."""
        rest = spec[len(cls.PREFIX):] if spec.startswith(cls.PREFIX) else ""
        folder, _, options = rest.partition(":")
        if not folder:
            raise DatasetError(f"{spec}: give the MNIST folder, as irmnist:FOLDER[:grids=N,digit=D,test_grids=M]")
        parsed = cls(folder, grids=grids, digit=digit)
        for item in filter(None, options.split(",")):
            key, sep, value = item.partition("=")
            if not sep or key not in ("grids", "test_grids", "digit"):
                raise DatasetError(f"{spec}: bad IR-MNIST option {item!r}; options: grids, test_grids, digit")
            try:
                setattr(parsed, key, int(value))
            except ValueError:
                raise DatasetError(f"{spec}: IR-MNIST option {key} needs a whole number, got {value!r}") from None
        if parsed.grids < 2 or parsed.test_grids < 2 or not 0 <= parsed.digit <= 9:
            raise DatasetError(f"{spec}: needs grids >= 2, test_grids >= 2 and a digit 0-9")
        return parsed

    def check_size(self, height: int, width: int, grid: int = 11) -> None:
        """A model for these grids must see each digit as whole pixel blocks: a square input that is
        a multiple of ``grid`` (176 = 11 × 16 in the recipe)."""
        if height != width or height % grid:
            raise DatasetError(f"{self.PREFIX}{self.folder}: IR-MNIST needs a square input that is a multiple of {grid} px "
                               f"(one block per digit, e.g. 176), not {height}x{width}")

    def description(self) -> str:
        """The training data's name in the manifest."""
        return f"IR-MNIST {self.grids} grids, digit {self.digit} left out"

    @staticmethod
    def trained_on(training: dict) -> dict[str, int]:
        """``grids`` and ``digit`` of the IR-MNIST a model was trained on, from its manifest's
        ``training["dataset"]`` (empty for other data), as defaults for :meth:`parse`: the test
        grids are drawn after the training grids, so the same count gives the same test grids."""
        dataset = training.get("dataset") or {}
        return {"grids": int(dataset["grids"]), "digit": int(dataset["digit"])} if dataset.get("kind") == "irmnist" else {}

    @cached_property
    def _mnist(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from .mnist import load_mnist

        return (*load_mnist(self.folder, "train"), *load_mnist(self.folder, "test"))

    def build(self, seed: int, positives: str = "few", with_train: bool = True) -> IrMnist:
        """The grids (the MNIST files are read once per spec)."""
        return build_irmnist(*self._mnist, n_train=self.grids, n_test=self.test_grids,
                             irregular_digit=self.digit, positives=positives, seed=seed, with_train=with_train)
