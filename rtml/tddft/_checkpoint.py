"""Append-only checkpoints of a batched propagation, safe against being killed at any time.

A checkpoint is a directory holding

- ``chunk-NNNNNN.density.npy``, ``chunk-NNNNNN.fock.npy`` and ``chunk-NNNNNN.frames.npz``:
  the frames saved since the previous checkpoint (density and AO Fock matrix, each
  (nsaved, nb, nspin, n, n) complex; time, field, energy, dipole), each written to a
  temporary name and renamed;
- ``state.npz``: the full propagator state at the last checkpoint (step index, P' and the
  Fock history used for extrapolation, counters, the engine's energy reference) and the
  numbers of valid chunks and frames, written last, also atomically.

A run killed between the chunk and the state writes leaves an extra chunk that the state
does not count; it is ignored and overwritten on resume, and the temporaries of a killed
write are removed. The inputs' hash is stored so that a checkpoint is never resumed with
different inputs (one of other inputs is removed and the run starts over).

Before a checkpoint is resumed it is verified: ``state.npz`` readable and complete, every
chunk it counts present and readable, of the state's batch shape, and the chunks' frames
adding up to the state's count. A damaged one (garbage, truncated, a chunk missing, or one
written before frames carried their Fock matrix) is reported in one warning line and
removed, and the run starts over from step 0. (Only structure is verified: a chunk of the
right size whose numbers were overwritten in place is not detected.)

After the run the frames stay on disk: :class:`CheckpointFrames` reads them back one
quantity, or one batch member, at a time; a member's matrices stay on disk as
:class:`~rtml.data.FrameBlocks`, so that its trajectory file is written one checkpoint chunk
at a time and no more than one chunk of frames is ever in memory.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml._atomic import atomic_write, remove_stale_temporaries
from rtml.data import FrameBlocks

log = logging.getLogger("rtml.tddft")

_FRAME_KEYS = ("time", "field", "energy", "dipole")
#: Per-frame matrices, one ``.npy`` file per chunk each (memory-mapped when read).
_MATRIX_KEYS = ("density", "fock")
_MODEL_KEYS = ("model_error", "build_density", "build_fock", "build_energy", "model_signal")
_OPTIONAL_KEYS = _MODEL_KEYS + ("energy_reference",)
_STATE_KEYS = ("step", "p_orth", "fock_history", "energy", "n_builds", "n_chunks", "input_hash")


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
    energy_reference : (nb,) float or None
        E[P] when each member's field was last on (after the kick, at step 0 for kicks and
        field-free runs): the energy the engine holds a field-free member to. None: the
        energy at ``step`` (a checkpoint written before it was recorded).
    build_energy : (nb,) float or None
        E[P'_b] of each member's last full build (the model's energy expansion point).
    model_signal : (nb,) float or None
        The change max|[L'[P'_b2 - P'_b1], P'_b2]| the model error was last measured on.
    """

    step: int
    p_orth: np.ndarray
    fock_history: np.ndarray
    energy: np.ndarray
    n_builds: int = 0
    model_error: np.ndarray | None = None
    build_density: np.ndarray | None = None
    build_fock: np.ndarray | None = None
    energy_reference: np.ndarray | None = None
    build_energy: np.ndarray | None = None
    model_signal: np.ndarray | None = None


class _Damaged(Exception):
    """A checkpoint that cannot be resumed; the message says what is wrong, in a few words."""


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
        self.n_frames = 0

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
            self.n_frames += len(frames["time"])
        optional = {k: getattr(state, k) for k in _OPTIONAL_KEYS if getattr(state, k) is not None}
        _atomic_save(self.path / "state.npz", lambda fh: np.savez(
            fh, step=state.step, p_orth=state.p_orth, fock_history=state.fock_history,
            energy=state.energy, n_builds=state.n_builds, n_chunks=self.n_chunks,
            n_frames=self.n_frames, input_hash=self.input_hash, **optional))

    def load(self) -> PropagationState | None:
        """The saved state, or None when there is no usable checkpoint for these inputs.

        A damaged checkpoint, or one of other inputs, is removed (a damaged one with a
        warning line), so that the run starts over from step 0.
        """
        if not self.path.is_dir():
            return None
        remove_stale_temporaries(self.path)
        if not self.exists():
            return None  # killed before its first state was written: nothing to resume
        try:
            state, input_hash, n_chunks, n_frames = self._read_state()
            if input_hash != self.input_hash:
                log.info("checkpoint %s belongs to other inputs; starting over", self.path)
                self.remove()
                return None
            counted = self._verify_chunks(n_chunks, state.p_orth.shape)
            if n_frames is not None and counted != n_frames:
                raise _Damaged(f"its chunks hold {counted} frames, its state counts {n_frames}")
        except _Damaged as err:
            log.warning("checkpoint %s is damaged (%s); removed, starting over from step 0",
                        self.path, err)
            self.remove()
            return None
        self.n_chunks, self.n_frames = n_chunks, counted
        return state

    def _read_state(self) -> tuple[PropagationState, str, int, int | None]:
        """The state, inputs hash, chunk count and frame count (None: not recorded) of
        ``state.npz``; raises :class:`_Damaged` when it cannot be read."""
        try:
            with np.load(self.path / "state.npz") as data:
                missing = [k for k in _STATE_KEYS if k not in data.files]
                if missing:
                    raise _Damaged(f"state.npz lacks {', '.join(missing)}")
                optional = {k: data[k] for k in _OPTIONAL_KEYS if k in data.files}
                state = PropagationState(step=int(data["step"]), p_orth=data["p_orth"],
                                         fock_history=data["fock_history"],
                                         energy=data["energy"], n_builds=int(data["n_builds"]),
                                         **optional)
                n_frames = int(data["n_frames"]) if "n_frames" in data.files else None
                return state, str(data["input_hash"]), int(data["n_chunks"]), n_frames
        except _Damaged:
            raise
        except Exception as err:  # numpy and zipfile raise many types on garbage
            raise _Damaged(f"state.npz unreadable: {type(err).__name__}") from None

    def _verify_chunks(self, n_chunks: int, batch_shape: tuple) -> int:
        """Check that the ``n_chunks`` chunks are present, readable and of ``batch_shape``
        ((nb, nspin, n, n)); return the number of frames they hold."""
        total = 0
        for i in range(n_chunks):
            lengths = set()
            for key in _MATRIX_KEYS:
                lengths.add(self._verify_matrices(self._chunk(i, f"{key}.npy"), batch_shape))
            path = self._chunk(i, "frames.npz")
            if not path.is_file():
                raise _Damaged(f"{path.name} is missing")
            try:
                with np.load(path) as data:
                    lengths.update(len(data[k]) for k in _FRAME_KEYS)
            except Exception as err:
                raise _Damaged(f"{path.name} unreadable: {type(err).__name__}") from None
            if len(lengths) != 1:
                raise _Damaged(f"chunk {i:06d} holds different numbers of frames per quantity")
            total += lengths.pop()
        return total

    @staticmethod
    def _verify_matrices(path: Path, batch_shape: tuple) -> int:
        """Frames in one ``.npy`` chunk of per-frame matrices (header and size checked)."""
        if not path.is_file():
            raise _Damaged(f"{path.name} is missing")
        try:
            matrices = np.load(path, mmap_mode="r")  # fails when the file is truncated
        except Exception as err:
            raise _Damaged(f"{path.name} unreadable: {type(err).__name__}") from None
        if matrices.ndim != len(batch_shape) + 1 or matrices.shape[1:] != tuple(batch_shape):
            raise _Damaged(f"{path.name} has shape {matrices.shape}, the state "
                           f"(n, {', '.join(map(str, batch_shape))})")
        return matrices.shape[0]

    def read_frames(self, member: int | None = None, keys=None, blocks: bool = False) -> dict:
        """Checkpointed frames, concatenated in time: every quantity, or those in ``keys``;
        (T, nb, ...) arrays, or (T, ...) of one batch member if given. Each matrix quantity
        is copied from its memory-mapped chunks into one array (no second copy), or with
        ``blocks`` left on disk as a :class:`~rtml.data.FrameBlocks` of the mapped chunks."""
        keys = _MATRIX_KEYS + _FRAME_KEYS if keys is None else tuple(keys)
        sel = slice(None) if member is None else member
        if not self.n_chunks:
            return {}
        out = {}
        for key in (k for k in _MATRIX_KEYS if k in keys):
            chunks = FrameBlocks([np.load(self._chunk(i, f"{key}.npy"), mmap_mode="r")[:, sel]
                                  for i in range(self.n_chunks)])
            out[key] = chunks if blocks else np.asarray(chunks)
        vectors = {k: [] for k in _FRAME_KEYS if k in keys}
        for i in range(self.n_chunks if vectors else 0):
            with np.load(self._chunk(i, "frames.npz")) as data:
                for k, parts in vectors.items():
                    parts.append(data[k] if k == "time" else data[k][:, sel])
        out.update({k: np.concatenate(parts) for k, parts in vectors.items()})
        return out

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class CheckpointFrames(Mapping):
    """The frames of a checkpointed propagation, read from its chunks when asked for.

    ``frames[key]`` is one quantity of every batch member, (T, nb, ...), as
    :func:`rtml.tddft.propagate` returns them; :meth:`member` is every quantity of one
    member, (T, ...), so that a batch's trajectories can be written one at a time with only
    one of them in memory. Valid until the checkpoint is removed.
    """

    def __init__(self, checkpoint: Checkpoint):
        self._checkpoint = checkpoint

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in _MATRIX_KEYS + _FRAME_KEYS:
            raise KeyError(key)
        return self._checkpoint.read_frames(keys=(key,))[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_MATRIX_KEYS + _FRAME_KEYS)

    def __len__(self) -> int:
        return len(_MATRIX_KEYS + _FRAME_KEYS)

    def member(self, member: int) -> dict:
        """All frames of batch member ``member``: ``time`` (T,), the rest (T, ...); the
        density and Fock matrices as :class:`~rtml.data.FrameBlocks` read from the
        checkpoint's chunks when written (one chunk in memory at a time)."""
        return self._checkpoint.read_frames(member=member, blocks=True)


def remove_finished_checkpoint(checkpoint_dir: str | Path, output: str | Path) -> bool:
    """Remove the checkpoint of a run whose output is already in place; True if removed.

    A run writes its output (atomically, after the last step) and only then removes its
    checkpoint. Killed between the two, it leaves a complete output and the checkpoint it
    was written from; the output is then newer than the checkpoint's last state. Such a
    checkpoint has nothing left to give (a rerun that replaces the output recomputes the
    same frames) and would otherwise stay on disk for good.
    """
    state = Path(checkpoint_dir) / "state.npz"
    output = Path(output)
    if not (state.is_file() and output.exists() and not output.is_symlink()):
        return False
    if output.stat().st_mtime_ns < state.stat().st_mtime_ns:
        return False
    log.info("removing checkpoint %s: the run it belongs to finished (%s was written after "
             "it)", checkpoint_dir, output)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return True
