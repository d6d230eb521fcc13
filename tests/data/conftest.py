"""Synthetic but physical trajectories for the HDF5 format tests (no propagation).

S, h and a converged density P0 come from PySCF SCF on LiH (RHF, n_spin=1) and LiH+
(UHF doublet, n_spin=2) in 6-31G. Frames are an exact unitary evolution in the Löwdin
basis,

    P'(t) = U(t) P0' U(t)^H,   P0' = S^1/2 P0 S^1/2,   U(t) = expm(-i t H'),
    P(t)  = S^-1/2 P'(t) S^-1/2,

with a fixed random Hermitian complex H', so Tr(P S), Hermiticity and idempotency hold to
rounding. The energy is the constant ``mf.e_tot`` (the evolution is not a real dynamics, so
E[P(t)] is not computed), the field is zero, and the dipole is the true total dipole of
each frame about the centre of nuclear charge:
mu = sum_A Z_A (R_A - O) - einsum('xij,ji->x', r_ints, P_total).real.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
from pyscf import gto, scf

from rtml import inputs_hash, provenance
from rtml.chem import basis_metadata
from rtml.data import Trajectory, assemble_store, write_trajectory
from rtml.fields import parse_field

ANGSTROM_GEOM = "Li 0 0 0; H 0 0 1.6"


def basis_labels(mol):
    """(atom index, l, m) of each AO in PySCF order, as the engine writes them."""
    return basis_metadata(mol)


def lowdin_evolution(S, dm0, times, seed=7, scale=0.3):
    """P_s(t) = S^-1/2 U(t) (S^1/2 P0_s S^1/2) U(t)^H S^-1/2, U = expm(-i t H').

    dm0: (n_spin, nbf, nbf) real; returns (n_steps, n_spin, nbf, nbf) complex.
    """
    lam, vec = np.linalg.eigh(S)
    s_half = (vec * np.sqrt(lam)) @ vec.T
    s_mhalf = (vec / np.sqrt(lam)) @ vec.T
    rng = np.random.default_rng(seed)
    nbf = S.shape[0]
    a = rng.normal(size=(nbf, nbf)) + 1j * rng.normal(size=(nbf, nbf))
    h_prime = scale * (a + a.conj().T) / 2
    out = np.empty((len(times), dm0.shape[0], nbf, nbf), dtype=np.complex128)
    for k, t in enumerate(times):
        u = scipy.linalg.expm(-1j * t * h_prime)
        for s, p0 in enumerate(dm0):
            p = s_mhalf @ (u @ (s_half @ p0 @ s_half) @ u.conj().T) @ s_mhalf
            out[k, s] = 0.5 * (p + p.conj().T)
    return out


def _make_trajectory(mol, mf, dm0, *, n_steps=12, dt=0.2, save_every=2, molecule="lih"):
    """A :class:`Trajectory` from an SCF result; dm0 is (n_spin, nbf, nbf)."""
    S = mol.intor("int1e_ovlp")
    hcore = mol.intor("int1e_kin") + mol.intor("int1e_nuc")
    times = np.arange(n_steps) * (dt * save_every)
    density = lowdin_evolution(S, dm0, times)
    charges = mol.atom_charges()
    coords = mol.atom_coords(unit="Bohr")
    origin = charges @ coords / charges.sum()
    with mol.with_common_orig(origin):
        r_ints = mol.intor("int1e_r")
    p_total = density.sum(axis=1)
    dip_nuc = charges @ (coords - origin)
    dipole = dip_nuc - np.einsum("xij,tji->tx", r_ints, p_total).real
    atom, ang, mag = basis_labels(mol)
    return Trajectory(
        molecule=molecule,
        atomic_numbers=charges.astype(np.int64),
        positions_angstrom=mol.atom_coords(unit="Angstrom"),
        charge=mol.charge,
        multiplicity=mol.spin + 1,
        basis=mol.basis,
        xc="hf",
        n_electrons=mol.nelectron,
        basis_atom_index=atom,
        basis_angular_momentum=ang,
        basis_magnetic_quantum=mag,
        overlap=S,
        core_hamiltonian=hcore,
        density=density,
        time=times,
        field=np.zeros((n_steps, 3)),
        energy=np.full(n_steps, mf.e_tot),
        dipole=dipole,
        dt=dt,
        save_every=save_every,
        propagator="mmut",
        field_spec={"kind": "delta_kick", "strength": 1e-3, "direction": [0.0, 0.0, 1.0]},
        dipole_origin_bohr=origin,
        provenance={"rtml_version": "0.1.0", "pyscf_version": "test", "input_hash": "0" * 16},
        extra_attrs={
            "e_ground": float(mf.e_tot),
            "grid_level": 3,
            "scf_converged": True,
            "dipole_ground": dipole[0].copy(),
            "scf_settings": {"conv_tol": 1e-10, "max_cycle": 50},
            "tags": ["synthetic", "test"],
            "comment": "plain string",
            "grid": None,
        },
    )


@pytest.fixture(scope="session")
def _scf_results():
    closed = gto.M(atom=ANGSTROM_GEOM, basis="6-31g", verbose=0)
    rhf = scf.RHF(closed).set(conv_tol=1e-11)
    rhf.kernel()
    assert rhf.converged
    opened = gto.M(atom=ANGSTROM_GEOM, basis="6-31g", charge=1, spin=1, verbose=0)
    uhf = scf.UHF(opened).set(conv_tol=1e-11)
    uhf.kernel()
    assert uhf.converged
    return closed, rhf, opened, uhf


@pytest.fixture(scope="session")
def _closed_traj(_scf_results):
    mol, mf = _scf_results[:2]
    return _make_trajectory(mol, mf, mf.make_rdm1()[None])


@pytest.fixture(scope="session")
def _open_traj(_scf_results):
    mol, mf = _scf_results[2:]
    return _make_trajectory(mol, mf, np.asarray(mf.make_rdm1()), molecule="lih_cation")


@pytest.fixture
def closed_traj(_closed_traj) -> Trajectory:
    """Closed-shell LiH/6-31G RHF trajectory, n_spin=1, 12 frames (a fresh copy)."""
    return copy.deepcopy(_closed_traj)


@pytest.fixture
def open_traj(_open_traj) -> Trajectory:
    """Open-shell LiH+/6-31G UHF doublet trajectory, n_spin=2, 12 frames (a fresh copy)."""
    return copy.deepcopy(_open_traj)


@pytest.fixture
def scf_results(_scf_results):
    """(mol_closed, rhf, mol_open, uhf) for LiH and LiH+ in 6-31G."""
    return _scf_results


@pytest.fixture
def make_trajectory():
    """The builder ``make_trajectory(mol, mf, dm0, *, n_steps=12, dt=0.2, save_every=2)``
    for tests that need their own initial density dm0 (n_spin, nbf, nbf)."""
    return _make_trajectory


# --------------------------------------------------------------------------- dataset store
# Small multi-molecule, multi-geometry, multi-field trajectory files for the Zarr store
# and TrajectoryWindows tests (tests/data/test_store.py, test_windows.py).

#: molecule -> (atoms with a bond length placeholder, equilibrium bond length in Å)
DATASET_MOLECULES = {"h2": ("H 0 0 0; H 0 0 {r}", 0.74), "lih": ("Li 0 0 0; H 0 0 {r}", 1.6)}
DATASET_GEOMETRIES = {"eq": 1.0, "s+10": 1.1, "s-10": 0.9}
DATASET_FIELDS = ("kick:1e-3:z", "gaussian:0.01:0.2:4:1.5:x")
DATASET_N_STEPS = 20


def make_dataset_trajectory(molecule: str, geometry_id: str, field_spec: str, *,
                            basis: str = "6-31g", n_steps: int = DATASET_N_STEPS,
                            dt: float = 0.2, save_every: int = 2):
    """A synthetic :class:`Trajectory` shaped like the engine's output (field spec from
    :mod:`rtml.fields`, ``geometry_id``/``kick_strength``/``ground_state_energy`` extra
    attributes, provenance with ``inputs_sha256``). RHF on a scaled bond, then unitary
    Löwdin-basis evolution seeded by the field, so every (geometry, field) differs."""
    template, r0 = DATASET_MOLECULES[molecule]
    mol = gto.M(atom=template.format(r=r0 * DATASET_GEOMETRIES[geometry_id]), basis=basis,
                verbose=0)
    mf = scf.RHF(mol).set(conv_tol=1e-10)
    mf.kernel()
    seed = int.from_bytes(f"{molecule}/{geometry_id}/{field_spec}".encode()[-8:], "little")
    traj = _make_trajectory(mol, mf, mf.make_rdm1()[None], n_steps=n_steps, dt=dt,
                            save_every=save_every, molecule=molecule)
    traj.density = lowdin_evolution(traj.overlap, mf.make_rdm1()[None], traj.time,
                                    seed=seed % (2 ** 32))
    field = parse_field(field_spec)
    traj.field = field.values(traj.time)
    traj.field_spec = field.to_json_dict()
    traj.propagator = "magnus2"
    ihash = inputs_hash({"molecule": molecule, "geometry": geometry_id, "field": field_spec,
                         "basis": basis, "n_steps": n_steps, "dt": dt})
    traj.provenance = provenance(ihash, engine="synthetic-test")
    traj.extra_attrs = {"geometry_id": geometry_id, "ground_state_energy": float(mf.e_tot),
                        "ground_state_dipole": traj.dipole[0].copy(),
                        "kick_strength": field.amplitude if field.is_kick else 0.0}
    return traj


def dataset_file_name(field_spec: str) -> str:
    return field_spec.replace(":", "_").replace(",", "_") + ".h5"


@pytest.fixture(scope="session")
def dataset_h5_files(tmp_path_factory):
    """Trajectory files for the store tests: {molecule: [paths]}, 2 molecules x 3 geometries
    x 2 fields, 20 frames each, laid out as ``ROOT/{molecule}/{geometry}/{field}.h5``."""
    root = tmp_path_factory.mktemp("dataset_h5")
    files: dict[str, list] = {}
    for molecule in DATASET_MOLECULES:
        for geometry_id in DATASET_GEOMETRIES:
            out = root / molecule / geometry_id
            out.mkdir(parents=True)
            for spec in DATASET_FIELDS:
                traj = make_dataset_trajectory(molecule, geometry_id, spec)
                files.setdefault(molecule, []).append(
                    write_trajectory(out / dataset_file_name(spec), traj))
    return files


@pytest.fixture
def dataset_trajectory():
    """The builder ``make_dataset_trajectory(molecule, geometry_id, field_spec, *,
    basis="6-31g", n_steps=20, dt=0.2, save_every=2)`` (see above)."""
    return make_dataset_trajectory


@pytest.fixture(scope="session")
def dataset_store(dataset_h5_files, tmp_path_factory):
    """A Zarr dataset store (``data.zarr``) of all :func:`dataset_h5_files`; read-only."""
    path = tmp_path_factory.mktemp("store") / "data.zarr"
    files = [p for mol in DATASET_MOLECULES for p in dataset_h5_files[mol]]
    summary = assemble_store(files, path, progress=False)
    assert summary["added"] == len(files) and summary["created"]
    return path
