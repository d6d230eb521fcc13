"""The Fock matrix of every saved frame and the ground state's F0 (marked ``physics``).

LiH PBE0/6-31G, grid level 1, 40 steps of 0.2 au: a strong kick (the linear-response
corrector's predictions are accepted on most steps), a Gaussian pulse and a weak kick, with
one build per step (``carry_model=False``, as datasets are made).
Measured here: the stored F[P(t)] agrees with a fresh build at the stored density to
2.0e-8 Ha (1.0e-8 of max|F|; 5.6e-6 of max|F - F0|) after the 1e-2 kick, 4.8e-9 Ha for
the pulse, 1.8e-12 Ha after the 1e-4 kick; the first frame (a full build) to ~3e-15.
max|[F0', P0']| = 2.4e-11 in the Löwdin basis; F0 equals PySCF's ``get_fock`` to 4e-15.
"""

import numpy as np
import pytest

from rtml.chem import load_molecule
from rtml.data import read_trajectory, validate_trajectory, write_trajectory
from rtml.fields import parse_field
from rtml.observables import idempotency_error, overlap_sqrt
from rtml.tddft import (Checkpoint, PropagationSettings, SimulationInputs, fock_and_energy,
                        fock_to_ao, prepare_ground_state, propagate, simulate, to_orthonormal)

pytestmark = pytest.mark.physics

FIELDS = ["kick:1e-2:z", "gaussian:0.02:0.2:3:1:x", "kick:1e-4:z"]


@pytest.fixture(scope="module")
def lih():
    settings = PropagationSettings(dt=0.2, n_steps=40, carry_model=False)
    inputs = SimulationInputs(molecule=load_molecule("lih"),
                              fields=[parse_field(f) for f in FIELDS], settings=settings,
                              grid_level=1)
    gs, fields = prepare_ground_state(inputs)
    inputs.fields = fields
    return gs, fields, simulate(inputs, ground_state=gs)


def test_fock_to_ao_inverts_to_orthonormal(lih):
    ctx = lih[0].context
    f = lih[2][0].fock[5]
    assert np.abs(fock_to_ao(ctx, to_orthonormal(ctx, f, density=False)) - f).max() < 1e-13


def test_stored_fock_is_the_exact_build_at_the_stored_density(lih):
    gs, _, trajs = lih
    bounds = {"kick:1e-2:z": 1e-7, "gaussian:0.02:0.2:3:1:x": 3e-8, "kick:1e-4:z": 1e-10}
    for spec, traj in zip(FIELDS, trajs):
        assert traj.fock.shape == traj.density.shape and traj.fock.dtype == np.complex128
        fresh, _ = fock_and_energy(gs.context, traj.density)
        error = np.abs(traj.fock - fresh).max(axis=(1, 2, 3))
        scale = np.abs(fresh).max()
        assert error[0] < 1e-13 * scale  # the first frame is a full build
        assert error.max() < bounds[spec] * scale, (spec, error.max() / scale)
        # Hermitian, with the imaginary (exchange of Im P) part present after a kick
        assert np.abs(traj.fock - traj.fock.conj().swapaxes(-1, -2)).max() < 1e-14 * scale
        assert np.abs(traj.fock.imag).max() > 1e-6
    # the strong kick: error small against the two-electron change the model learns
    fresh, _ = fock_and_energy(gs.context, trajs[0].density)
    change = np.abs(fresh - trajs[0].ground_state_fock).max()
    assert np.abs(trajs[0].fock - fresh).max() < 5e-5 * change


def test_default_carried_frames_move_the_density_as_one_build_per_step(lih):
    """The engine's default carries the linear model between builds: fewer builds, the same
    densities (4.5e-9 measured; 82 builds against 127), and a stored Fock matrix that is the
    model's prediction: looser than a fresh build, but small against its change from F0
    (9.5e-7, 6.7e-5 and 8.9e-4 of it for the three fields)."""
    gs, fields, exact = lih
    carried, stats = propagate(gs, fields, PropagationSettings(dt=0.2, n_steps=40))
    _, exact_stats = propagate(gs, fields, PropagationSettings(dt=0.2, n_steps=40,
                                                               carry_model=False))
    assert stats["n_builds"] < 0.75 * exact_stats["n_builds"], (stats["n_builds"],
                                                              exact_stats["n_builds"])
    for b, traj in enumerate(exact):
        assert np.abs(carried["density"][:, b] - traj.density).max() < 1e-7
        fresh, _ = fock_and_energy(gs.context, carried["density"][:, b])
        change = np.abs(fresh - traj.ground_state_fock).max()
        assert np.abs(carried["fock"][:, b] - fresh).max() < 3e-3 * change


def test_ground_state_density_and_fock(lih):
    gs, _, trajs = lih
    traj = trajs[0]
    p0, f0 = traj.ground_state_density, traj.ground_state_fock
    assert p0.shape == f0.shape == (1,) + traj.overlap.shape
    assert p0.dtype == f0.dtype == np.float64
    assert idempotency_error(p0[None], overlap_sqrt(traj.overlap)).max() < 1e-12
    assert abs(np.einsum("sij,ji->", p0, traj.overlap) - traj.n_electrons) < 1e-10
    # F0 is the engine's build at P0 (and PySCF's Fock matrix)
    fresh, _ = fock_and_energy(gs.context, p0[None].astype(complex))
    assert np.abs(fresh[0] - f0).max() < 1e-14 * np.abs(f0).max()
    assert np.abs(gs.mf.get_fock(dm=p0[0]) - f0[0]).max() < 1e-12
    # stationary: [F0', P0'] ~ 0 in the Löwdin basis
    ctx = gs.context
    f0p, p0p = to_orthonormal(ctx, f0, density=False), to_orthonormal(ctx, p0, density=True)
    assert np.abs(f0p @ p0p - p0p @ f0p).max() < 1e-9
    # the kicked frame 0 is a unitary rotation of P0; a field-free start would equal F0
    for other in trajs[1:]:
        assert np.array_equal(other.ground_state_fock, f0)
        assert np.array_equal(other.ground_state_density, p0)
    assert np.abs(trajs[1].fock[0] - f0).max() < 1e-12  # the pulse starts at the ground state


def test_resume_gives_identical_fock_frames(lih, tmp_path):
    gs, fields, _ = lih
    fields = fields[:1]
    settings = PropagationSettings(dt=0.2, n_steps=20, checkpoint_every=5, save_every=2)
    whole, _ = propagate(gs, fields, settings)
    first = PropagationSettings(dt=0.2, n_steps=10, checkpoint_every=5, save_every=2)
    propagate(gs, fields, first, checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    resumed, _ = propagate(gs, fields, settings, checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    assert resumed["fock"].shape == whole["fock"].shape == (11, 1, 1, 11, 11)
    assert np.abs(resumed["fock"] - whole["fock"]).max() < 1e-12
    assert np.abs(resumed["density"] - whole["density"]).max() < 1e-12


def test_checkpoint_without_fock_chunks_starts_over(lih, tmp_path):
    gs, fields, _ = lih
    settings = PropagationSettings(dt=0.2, n_steps=10, checkpoint_every=5)
    propagate(gs, fields[:1], settings, checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    (tmp_path / "ckpt" / "chunk-000001.fock.npy").unlink()  # as written by an older rtml
    assert Checkpoint(tmp_path / "ckpt", "h").load() is None
    frames, _ = propagate(gs, fields[:1], settings, checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    assert frames["fock"].shape[0] == frames["density"].shape[0] == 11


def test_simulated_file_round_trips_and_validates(lih, tmp_path):
    traj = lih[2][0]
    path = write_trajectory(tmp_path / "t.h5", traj)
    report = validate_trajectory(path)
    assert report.ok, "\n".join(report.format_lines())
    assert report["fock_hermiticity"].value < 1e-14
    back = read_trajectory(path)
    assert np.array_equal(back.fock, traj.fock)
    assert np.array_equal(back.ground_state_fock, traj.ground_state_fock)
