"""Append-only checkpoints of a batched propagation, safe against being killed at any time.

A checkpoint is a directory holding

- ``chunk-NNNNNN.density.npy``, ``chunk-NNNNNN.fock.npy`` and ``chunk-NNNNNN.frames.npz``:
  the frames saved since the previous checkpoint (density and AO Fock matrix, each
  (nsaved, nb, nspin, n, n) complex; time, field, energy, dipole), each written to a
  temporary name and renamed;
- ``state.npz``: the full propagator state at the last checkpoint (step index, P' and the
  Fock history used for extrapolation, counters) and the number of valid chunks, written
  last, also atomically.

A run killed between the chunk and the state writes leaves an extra chunk that the state
does not count; it is ignored and overwritten on resume. The inputs' hash is stored so that
a checkpoint is never resumed with different inputs. A checkpoint written before frames
carried their Fock matrix (no ``fock.npy`` chunks) is not resumed: the run starts over.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml._atomic import atomic_write

_FRAME_KEYS = ("time", "field", "energy", "dipole")
#: Per-frame matrices, one ``.npy`` file per chunk each (memory-mapped when read).
_MATRIX_KEYS = ("density", "fock")
_MODEL_KEYS = ("model_error", "build_density", "build_fock")


@dataclass
class PropagationState:
    """Everything needed to continue a propagation bit-for-bit.

    Attributes
    ----------
    step : int
        Number of completed time steps.
    p_orth : (nb, nspin, n, n) complex
        Density in the Löwdin basis at ``step``.
    fock_history : (k, nb, nspin, n, n) complex, k <= 3
        Electronic F' at the last k steps (oldest first), for extrapolation.
    energy : (nb,) float
        E[P] at ``step``.
    n_builds : int
        Fock builds done so far (per batch member with work, summed).
    model_error : (nb,) float or None
        Measured relative error of the linear-response corrector model per member.
    build_density, build_fock : (nb, nspin, n, n) complex or None
        P' and F' of each member's last full Fock build (the model's expansion point).
    """

    step: int
    p_orth: np.ndarray
    fock_history: np.ndarray
    energy: np.ndarray
    n_builds: int = 0
    model_error: np.ndarray | None = None
    build_density: np.ndarray | None = None
    build_fock: np.ndarray | None = None


def _atomic_save(path: Path, writer) -> None:
    """``writer(file_handle)`` into ``path``, atomically and fsynced."""
    def write(tmp):
        with open(tmp, "wb") as fh:
            writer(fh)
    atomic_write(path, write, fsync=True)


class Checkpoint:
    """A checkpoint directory for one batched propagation (see module docstring)."""

    def __init__(self, path, input_hash: str):
        self.path = Path(path)
        self.input_hash = input_hash
        self.n_chunks = 0

    def exists(self) -> bool:
        return (self.path / "state.npz").is_file()

    def _chunk(self, i: int, what: str) -> Path:
        return self.path / f"chunk-{i:06d}.{what}"

    def save(self, state: PropagationState, frames: dict) -> None:
        """Append the frames saved since the last call, then record the state."""
        self.path.mkdir(parents=True, exist_ok=True)
        if frames and len(frames["time"]):
            for key in _MATRIX_KEYS:
                _atomic_save(self._chunk(self.n_chunks, f"{key}.npy"),
                             lambda fh, key=key: np.save(fh, frames[key]))
            _atomic_save(self._chunk(self.n_chunks, "frames.npz"),
                         lambda fh: np.savez(fh, **{k: frames[k] for k in _FRAME_KEYS}))
            self.n_chunks += 1
        model = {k: getattr(state, k) for k in _MODEL_KEYS if getattr(state, k) is not None}
        _atomic_save(self.path / "state.npz", lambda fh: np.savez(
            fh, step=state.step, p_orth=state.p_orth, fock_history=state.fock_history,
            energy=state.energy, n_builds=state.n_builds, n_chunks=self.n_chunks,
            input_hash=self.input_hash, **model))

    def load(self) -> PropagationState | None:
        """The saved state, or None when there is no usable checkpoint for these inputs."""
        if not self.exists():
            return None
        with np.load(self.path / "state.npz") as data:
            if str(data["input_hash"]) != self.input_hash:
                return None
            n_chunks = int(data["n_chunks"])
            if not all(self._chunk(i, f"{key}.npy").is_file()
                       for i in range(n_chunks) for key in _MATRIX_KEYS):
                return None  # an older checkpoint without the frames' Fock matrices
            self.n_chunks = n_chunks
            model = {k: data[k] for k in _MODEL_KEYS if k in data}
            return PropagationState(step=int(data["step"]), p_orth=data["p_orth"],
                                    fock_history=data["fock_history"], energy=data["energy"],
                                    n_builds=int(data["n_builds"]), **model)

    def read_frames(self, member: int | None = None) -> dict:
        """All checkpointed frames, concatenated in time; one batch member if given."""
        sel = slice(None) if member is None else member
        parts = {k: [] for k in _MATRIX_KEYS + _FRAME_KEYS}
        for i in range(self.n_chunks):
            for key in _MATRIX_KEYS:
                matrices = np.load(self._chunk(i, f"{key}.npy"), mmap_mode="r")
                parts[key].append(np.array(matrices[:, sel]))
            with np.load(self._chunk(i, "frames.npz")) as data:
                for k in _FRAME_KEYS:
                    parts[k].append(data[k] if k == "time" else data[k][:, sel])
        return {k: np.concatenate(v) for k, v in parts.items()} if self.n_chunks else {}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
