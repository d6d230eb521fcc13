"""Checkpoints: exact round trip, damaged ones detected and started over, frames read back
one batch member at a time; the engine's own invariant checks and warnings."""

import logging

import numpy as np
import pytest

from rtml import PropagationError
from rtml.chem import SystemSpec, load_molecule
from rtml.fields import parse_field
from rtml.tddft import (Checkpoint, PropagationSettings, PropagationState, converged_ground_state,
                        physics_warnings, propagate)

NB, NSPIN, N = 2, 1, 3


def state(step: int, rng) -> PropagationState:
    shape = (NB, NSPIN, N, N)
    return PropagationState(step=step, p_orth=rng.normal(size=shape) + 1j * rng.normal(size=shape),
                            fock_history=rng.normal(size=(3, *shape)) + 0j,
                            energy=rng.normal(size=NB), n_builds=3 * step,
                            model_error=rng.normal(size=NB), energy_reference=rng.normal(size=NB))


def frames(n: int, rng) -> dict:
    shape = (n, NB, NSPIN, N, N)
    return {"density": rng.normal(size=shape) + 1j * rng.normal(size=shape),
            "fock": rng.normal(size=shape) + 1j * rng.normal(size=shape),
            "time": rng.normal(size=n), "field": rng.normal(size=(n, NB, 3)),
            "energy": rng.normal(size=(n, NB)), "dipole": rng.normal(size=(n, NB, 3))}


@pytest.fixture
def written(tmp_path):
    """A checkpoint of three chunks (1, 4 and 2 frames); its last state and all frames."""
    rng = np.random.default_rng(5)
    checkpoint = Checkpoint(tmp_path / "ckpt", "hash")
    chunks = [frames(n, rng) for n in (1, 4, 2)]
    for step, chunk in enumerate(chunks):
        last = state(step, rng)
        checkpoint.save(last, chunk)
    whole = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return tmp_path / "ckpt", last, whole


def test_checkpoint_round_trips_exactly(written):
    path, last, whole = written
    loaded = Checkpoint(path, "hash")
    back = loaded.load()
    for key in ("p_orth", "fock_history", "energy", "model_error", "energy_reference"):
        assert np.array_equal(getattr(back, key), getattr(last, key)), key
    assert (back.step, back.n_builds) == (last.step, last.n_builds)
    everything = loaded.read_frames()
    for member in range(NB):
        one = loaded.read_frames(member=member)
        for key, value in whole.items():
            assert np.array_equal(everything[key], value), key
            expected = value if key == "time" else value[:, member]
            assert np.array_equal(one[key], expected), key


@pytest.mark.parametrize("damage, why", [
    ("garbage state", "state.npz unreadable"),
    ("state without its step", "state.npz lacks step"),
    ("missing frames chunk", "chunk-000001.frames.npz is missing"),
    ("missing fock chunk", "chunk-000002.fock.npy is missing"),
    ("truncated density chunk", "chunk-000001.density.npy unreadable"),
    ("chunk of another batch", "chunk-000000.fock.npy has shape"),
    ("chunk of other length", "chunk 000002 holds different numbers of frames"),
    ("frames miscounted", "its chunks hold 7 frames, its state counts 6"),
])
def test_damaged_checkpoint_is_reported_removed_and_not_resumed(written, caplog, damage, why):
    path = written[0]
    if damage == "garbage state":
        (path / "state.npz").write_bytes(b"\x00garbage" * 40)
    elif damage == "state without its step":
        with np.load(path / "state.npz") as data:
            kept = {k: data[k] for k in data.files if k != "step"}
        np.savez(path / "state.npz", **kept)
    elif damage == "missing frames chunk":
        (path / "chunk-000001.frames.npz").unlink()
    elif damage == "missing fock chunk":  # also a checkpoint of an rtml before F(t) was saved
        (path / "chunk-000002.fock.npy").unlink()
    elif damage == "truncated density chunk":
        chunk = path / "chunk-000001.density.npy"
        chunk.write_bytes(chunk.read_bytes()[:-16])
    elif damage == "chunk of another batch":
        np.save(path / "chunk-000000.fock.npy", np.zeros((1, NB + 1, NSPIN, N, N), complex))
    elif damage == "chunk of other length":
        np.save(path / "chunk-000002.fock.npy", np.zeros((3, NB, NSPIN, N, N), complex))
    else:
        with np.load(path / "state.npz") as data:
            kept = {k: data[k] for k in data.files}
        np.savez(path / "state.npz", **{**kept, "n_frames": 6})
    with caplog.at_level(logging.INFO, logger="rtml"):
        assert Checkpoint(path, "hash").load() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"is damaged ({why}" in warnings[0] and "starting over from step 0" in warnings[0]
    assert not path.exists()


def test_checkpoint_of_other_inputs_is_removed_quietly(written, caplog):
    path = written[0]
    with caplog.at_level(logging.WARNING, logger="rtml"):
        assert Checkpoint(path, "other hash").load() is None
    assert not caplog.records and not path.exists()


@pytest.fixture(scope="module")
def h2():
    system = SystemSpec(molecule=load_molecule("h2"), basis="sto-3g", grid_level=1)
    return converged_ground_state(system)


def test_engine_stops_when_energy_conservation_breaks(h2, tmp_path):
    """H2, kick 1.0 (0.96 Eh put in): at dt 2 the first step already loses 2e-2 Eh (exit 0
    and a wrong file before the engine checked itself); at dt 0.05 it keeps it to 2e-5."""
    kick = [parse_field("kick:1.0:z")]
    checkpoint = Checkpoint(tmp_path / "ckpt", "h")
    with pytest.raises(PropagationError, match=r"energy drifted by .* with the field off .* at "
                                               r"step 1 \(t = 2.000 au\) .*dt = 2 au"):
        propagate(h2, kick, PropagationSettings(dt=2.0, n_steps=10), checkpoint=checkpoint)
    frames, _ = propagate(h2, kick, PropagationSettings(dt=0.05, n_steps=200))
    assert 1e-6 < np.abs(frames["energy"] - frames["energy"][0]).max() < 1e-4


def test_strong_pulse_is_not_mistaken_for_broken_conservation(h2):
    """E rises while a strong pulse is on, then stays at its post-pulse value."""
    pulse = [parse_field("gaussian:0.1:0.5:3:1:z")]
    frames, _ = propagate(h2, pulse, PropagationSettings(dt=0.1, n_steps=150))
    energy = frames["energy"][:, 0]
    assert energy[100] - energy[0] > 1e-3  # the pulse put energy in
    assert np.abs(energy[100:] - energy[100]).max() < 1e-6


def test_settings_beyond_the_documented_limits_are_named():
    fields = [parse_field(s) for s in ("kick:10:z", "gaussian:1e6:0.2:5:2:x", "kick:1e-3:z",
                                       "none")]
    lines = physics_warnings(fields, PropagationSettings(dt=5.0, n_steps=1))
    assert len(lines) == 3
    assert "kick strength |κ| 10 au of field kick:10.0:z is above 0.1 au" in lines[0]
    assert "field amplitude |E0| 1e+06 au" in lines[1]
    assert "time step dt = 5 au is above 1 au" in lines[2]
    assert physics_warnings(fields[2:], PropagationSettings(dt=0.5, n_steps=1)) == []
