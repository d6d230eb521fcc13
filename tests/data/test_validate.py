"""validate_trajectory: passes on good files, names the right check on broken ones."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from rtml import InputError
from rtml.data import Check, ValidationReport, validate_trajectory, write_trajectory

ALL_CHECKS = ["schema", "finite", "overlap_symmetric", "overlap_positive", "hermiticity",
              "electron_count", "idempotency", "response", "time_grid", "energy_conservation"]


def validate(path) -> ValidationReport:
    """validate_trajectory streaming 5 frames at a time, so that 12-frame files span 3 blocks
    (the last one partial)."""
    return validate_trajectory(path, block_frames=5)


def failed(report: ValidationReport) -> set[str]:
    return {c.name for c in report.failed}


def written(traj, tmp_path, name="t.h5"):
    return write_trajectory(tmp_path / name, traj)


@pytest.mark.parametrize("which", ["closed_traj", "open_traj"])
def test_good_file_passes(which, request, tmp_path):
    report = validate(written(request.getfixturevalue(which), tmp_path))
    assert report.ok, "\n".join(report.format_lines())
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert all(isinstance(c, Check) for c in report.checks)
    assert report["hermiticity"].value < 1e-13
    assert report["electron_count"].value < 1e-12
    assert report["idempotency"].value < 1e-12
    assert report["energy_conservation"].value == 0.0
    lines = report.format_lines()
    assert "OK" in lines[0] and len(lines) == 1 + len(ALL_CHECKS)
    assert all(line.startswith("  PASS") for line in lines[1:])


def test_block_size_does_not_change_results(open_traj, tmp_path):
    path = written(open_traj, tmp_path)
    small = validate(path)
    assert validate_trajectory(path, block_frames=256).checks == small.checks
    with pytest.raises(InputError, match="block_frames must be a positive integer"):
        validate_trajectory(path, block_frames=0)


def test_missing_file_raises(tmp_path):
    with pytest.raises(InputError, match="nope.h5"):
        validate(tmp_path / "nope.h5")


def test_corrupted_density_element(closed_traj, tmp_path):
    path = written(closed_traj, tmp_path)
    with h5py.File(path, "r+") as f:
        f["dynamics/density_real"][7, 0, 0, 1] += 1e-3
    report = validate(path)
    assert "hermiticity" in failed(report)
    herm = report["hermiticity"]
    assert herm.value == pytest.approx(1e-3, rel=1e-6)
    assert "worst frame 7, spin 0" in herm.message
    assert "FAILED" in report.format_lines()[0]


def test_wrong_trace(closed_traj, tmp_path):
    closed_traj.density *= 1.001
    report = validate(written(closed_traj, tmp_path))
    assert "electron_count" in failed(report)
    assert report["electron_count"].value == pytest.approx(4e-3, rel=1e-6)
    assert report["hermiticity"].passed


def test_open_shell_wrong_spin_split(open_traj, tmp_path):
    # swap alpha and beta: total trace right, but N_alpha=1, N_beta=2 is wrong for M=2
    open_traj.density = open_traj.density[:, ::-1].copy()
    report = validate(written(open_traj, tmp_path))
    assert failed(report) == {"electron_count"}
    assert report["electron_count"].value == pytest.approx(1.0)


def test_open_shell_inconsistent_multiplicity(open_traj, tmp_path):
    path = written(open_traj, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["multiplicity"] = 1                   # 3 electrons cannot be a singlet
    report = validate(path)
    assert failed(report) == {"electron_count"}
    assert "inconsistent" in report["electron_count"].message


def test_nan(open_traj, tmp_path):
    path = written(open_traj, tmp_path)
    with h5py.File(path, "r+") as f:
        f["dynamics/density_imag"][6, 1, 2, 3] = np.nan
    report = validate(path)
    assert "finite" in failed(report)
    assert report["finite"].value == 1.0
    assert "(6, 1, 2, 3)" in report["finite"].message
    assert "hermiticity" in failed(report)
    assert "non-finite" in report["hermiticity"].message
    assert report["time_grid"].passed and report["energy_conservation"].passed


def test_missing_dataset(closed_traj, tmp_path):
    path = written(closed_traj, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["dynamics/energy"]
    report = validate(path)
    assert failed(report) == {"schema", "energy_conservation"}
    assert "missing dataset 'dynamics/energy'" in report["schema"].message
    assert report["energy_conservation"].message.startswith("skipped")
    assert report["hermiticity"].passed and report["idempotency"].passed


def test_missing_density_and_bad_attrs(closed_traj, tmp_path):
    path = written(closed_traj, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["dynamics/density_imag"]
        del f.attrs["dt"]
        f.attrs["n_steps"] = 99
    report = validate(path)
    assert failed(report) == {"schema", "hermiticity", "electron_count", "idempotency",
                              "response", "time_grid"}
    msg = report["schema"].message
    assert "'dt'" in msg and "n_steps=99" in msg and "density_imag" in msg
    assert "root attribute 'dt'" in report["time_grid"].message


def test_wrong_dtype_and_shape(closed_traj, tmp_path):
    path = written(closed_traj, tmp_path)
    with h5py.File(path, "r+") as f:
        energy = f["dynamics/energy"][()]
        del f["dynamics/energy"]
        f["dynamics/energy"] = energy.astype(np.float32)
        dipole = f["dynamics/dipole"][()]
        del f["dynamics/dipole"]
        f["dynamics/dipole"] = dipole[:-1]
    report = validate(path)
    assert failed(report) == {"schema"}
    assert "float32" in report["schema"].message and "(11, 3)" in report["schema"].message


def test_non_idempotent_density(scf_results, make_trajectory, tmp_path):
    mol, mf = scf_results[:2]
    # natural orbitals of P0 with occupations (2, 1.9, 0.1, 0, ...): trace kept, P'P' != P'
    S = mol.intor("int1e_ovlp")
    lam, vec = np.linalg.eigh(S)
    s_half = (vec * np.sqrt(lam)) @ vec.T
    s_mhalf = (vec / np.sqrt(lam)) @ vec.T
    occ, nat = np.linalg.eigh(s_half @ mf.make_rdm1() @ s_half)
    occ, nat = occ[::-1], nat[:, ::-1]
    occ = np.round(occ)
    occ[1:3] = [1.9, 0.1]
    dm0 = s_mhalf @ (nat * occ) @ nat.T @ s_mhalf
    traj = make_trajectory(mol, mf, dm0[None])
    report = validate(written(traj, tmp_path))
    assert failed(report) == {"idempotency"}
    # R = P'P' - P' = -0.0475 (|v1><v1| + |v2><v2|), so 0 < max|R_ij| <= 0.95 * 0.05
    assert 1e-2 < report["idempotency"].value <= 0.0475 + 1e-12


def test_energy_drift_without_field(closed_traj, tmp_path):
    closed_traj.energy = closed_traj.energy + 1e-4 * np.arange(closed_traj.n_steps)
    report = validate(written(closed_traj, tmp_path))
    assert failed(report) == {"energy_conservation"}
    assert report["energy_conservation"].value == pytest.approx(1.1e-3)


def test_energy_drift_with_field_is_skipped(closed_traj, tmp_path):
    closed_traj.energy = closed_traj.energy + 1e-4 * np.arange(closed_traj.n_steps)
    closed_traj.field[:, 2] = 1e-3 * np.sin(closed_traj.time)
    report = validate(written(closed_traj, tmp_path))
    assert report.ok
    assert report["energy_conservation"].message.startswith(
        "field on: energy not conserved by design")
    assert report["energy_conservation"].tolerance is None


@pytest.mark.parametrize("shift", [1e-3, -1.0])           # non-uniform / non-increasing
def test_non_uniform_time(closed_traj, tmp_path, shift):
    closed_traj.time = closed_traj.time.copy()
    closed_traj.time[5] += shift
    report = validate(written(closed_traj, tmp_path))
    assert failed(report) == {"time_grid"}
    if shift < 0:
        assert "not strictly increasing" in report["time_grid"].message


def test_time_spacing_uses_save_every(closed_traj, tmp_path):
    bad = dataclasses.replace(closed_traj, save_every=3)
    report = validate(written(bad, tmp_path))
    assert failed(report) == {"time_grid"}


def test_overlap_not_positive_definite(closed_traj, tmp_path):
    closed_traj.overlap = closed_traj.overlap - 2.0 * np.eye(closed_traj.n_basis)
    report = validate(written(closed_traj, tmp_path))
    assert {"overlap_positive", "idempotency"} <= failed(report)
    assert "skipped" in report["idempotency"].message
