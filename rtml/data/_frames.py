"""Per-frame arrays too large to hold at once: a (T, ...) array kept as blocks along time.

A propagation of many steps keeps its frames in checkpoint chunks on disk. To write its
trajectory file without first loading every frame into memory, the record holds its
per-frame matrices as :class:`FrameBlocks` (the chunks, memory-mapped) and
:func:`rtml.data.write_trajectory` copies them into the HDF5 datasets one block at a time:
at most one block of one quantity is in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np


class FrameBlocks:
    """A (T, ...) array stored as consecutive blocks along its first axis.

    Each block is an array-like of shape (T_k, ...) (e.g. a slice of a memory-mapped
    ``.npy`` file); T = sum T_k. :meth:`blocks` yields them as arrays one at a time;
    ``np.asarray(frame_blocks)`` concatenates them (the whole array in memory) for code
    that needs it.
    """

    def __init__(self, blocks: Sequence):
        if not blocks:
            raise ValueError("FrameBlocks needs at least one block")
        tails = {tuple(b.shape[1:]) for b in blocks}
        dtypes = {np.dtype(b.dtype) for b in blocks}
        if len(tails) != 1 or len(dtypes) != 1:
            raise ValueError(f"FrameBlocks: blocks disagree in shape {sorted(tails)} "
                             f"or dtype {sorted(map(str, dtypes))}")
        self._blocks = list(blocks)
        self.shape = (sum(b.shape[0] for b in blocks), *tails.pop())
        self.dtype = dtypes.pop()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def blocks(self) -> Iterator[np.ndarray]:
        """The blocks in time order, each read into memory only when it is reached."""
        for block in self._blocks:
            yield np.asarray(block)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.empty(self.shape, dtype=self.dtype if dtype is None else dtype)
        start = 0
        for block in self.blocks():
            whole[start:start + len(block)] = block
            start += len(block)
        return whole

    def __getitem__(self, index):
        return np.asarray(self)[index]


def frames_in_memory(record):
    """``record`` (a :class:`~rtml.data.Trajectory`) with every :class:`FrameBlocks` read
    into an ordinary array, e.g. before the files its blocks map are removed."""
    loaded = {name: np.asarray(value) for name, value in record.datasets.items()
              if isinstance(value, FrameBlocks)}
    density = record.density
    return replace(record, density=np.asarray(density) if isinstance(density, FrameBlocks)
                   else density, datasets={**record.datasets, **loaded})
