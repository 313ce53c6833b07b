"""Each unit's top and bottom k images, merged block by block in O(k x channels) memory.

The merge is exact: its result equals one stable sort of every row (ties go to the lower image index), so a
scan that keeps no activations matrix (`keep_activations=False`) ranks exactly as one that does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vizprobe.files import atomic_write_bytes

TOPK_BLOCK = 1 << 16  # rows of the activations read at a time when ranking: memory stays O(block x channels)
SIDES = (("top", -1.0), ("bottom", 1.0))  # (name, sign): each side keeps the k smallest `sign * value`


def merge_extremes(
    best_index: np.ndarray, best_value: np.ndarray, rows: np.ndarray, values: np.ndarray, k: int, sign: float
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the current (k', C) winners and a block of new `rows` (their `values`, (B, C)), per column;
    best = smallest `sign * value`, ties to the lower row index."""
    values = np.concatenate([best_value, np.asarray(values, np.float32)])
    index = np.concatenate([best_index, np.broadcast_to(rows[:, None], (len(rows), values.shape[1]))])
    by_index = np.argsort(index, axis=0, kind="stable")  # earlier winners are not in index order
    values, index = np.take_along_axis(values, by_index, 0), np.take_along_axis(index, by_index, 0)
    order = np.argsort(sign * values, axis=0, kind="stable")[:k]  # stable: ties keep the lower index
    return np.take_along_axis(index, order, 0), np.take_along_axis(values, order, 0)


def empty(channels: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, channels), np.int64), np.zeros((0, channels), np.float32)


def extreme_rows(
    acts: np.ndarray, valid: np.ndarray, k: int, sign: float, block: int = TOPK_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values), each (k, C): per column the k rows of `acts` (only rows `valid`, ascending) with the
    smallest `sign * value`, ties to the lower row index; read block by block and merged exactly."""
    best_index, best_value = empty(acts.shape[1])
    for begin in range(0, len(valid), block):
        rows = valid[begin : begin + block]
        best_index, best_value = merge_extremes(best_index, best_value, rows, acts[rows], k, sign)
    return best_index, best_value


@dataclass
class LayerSummary:
    """One layer's ranking state: top/bottom (k, C) winners and per-channel count, sum and sum of squares
    (float64), which give each unit's mean and standard deviation without the activations."""

    channels: int
    index: dict[str, np.ndarray] = field(default_factory=dict)
    value: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0
    total: np.ndarray | None = None
    total_sq: np.ndarray | None = None

    def __post_init__(self) -> None:
        for side, _ in SIDES:
            if side not in self.index:
                self.index[side], self.value[side] = empty(self.channels)
        if self.total is None:
            self.total, self.total_sq = np.zeros(self.channels), np.zeros(self.channels)

    def add(self, rows: np.ndarray, values: np.ndarray, k: int) -> None:
        """Merge the activations `values` (B, C) of images `rows` (ascending, all after the ones added before)."""
        if not len(rows):
            return
        for side, sign in SIDES:
            self.index[side], self.value[side] = merge_extremes(
                self.index[side], self.value[side], rows, values, k, sign
            )
        wide = np.asarray(values, np.float64)
        self.count += len(rows)
        self.total += wide.sum(axis=0)
        self.total_sq += np.square(wide).sum(axis=0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The topk/LAYER.npz arrays: `{side}_index`/`{side}_value` are (C, k), one row per unit."""
        out: dict[str, np.ndarray] = {"count": np.asarray(self.count), "sum": self.total, "sum_sq": self.total_sq}
        for side, _ in SIDES:
            out[f"{side}_index"] = self.index[side].T.astype(np.int64)
            out[f"{side}_value"] = self.value[side].T.astype(np.float32)
        return out

    @classmethod
    def from_arrays(cls, data) -> LayerSummary:
        index = {side: np.asarray(data[f"{side}_index"]).T.copy() for side, _ in SIDES}
        value = {side: np.asarray(data[f"{side}_value"]).T.copy() for side, _ in SIDES}
        channels = index["top"].shape[1]
        total, total_sq = np.array(data["sum"], np.float64), np.array(data["sum_sq"], np.float64)
        return cls(channels, index, value, int(data["count"]), total, total_sq)

    @classmethod
    def of_matrix(cls, acts: np.ndarray, valid: np.ndarray, k: int, block: int = TOPK_BLOCK) -> LayerSummary:
        """The summary of the rows `valid` of a whole activations matrix, read block by block."""
        summary = cls(acts.shape[1])
        for begin in range(0, len(valid), block):
            rows = valid[begin : begin + block]
            summary.add(rows, acts[rows], k)
        return summary


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (`files.atomic_write_bytes`: temporary file, fsync, rename), so a kill or a
    power cut leaves the previous one whole and progress.json, written after it, never runs ahead of it."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
