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

from rtml.data import Trajectory

ANGSTROM_GEOM = "Li 0 0 0; H 0 0 1.6"


def basis_labels(mol):
    """(atom index, l, m) of each AO in PySCF order (l=1: px, py, pz = m +1, -1, 0)."""
    atom, ang, mag = [], [], []
    for b in range(mol.nbas):
        l = mol.bas_angular(b)
        ms = [1, -1, 0] if l == 1 else list(range(-l, l + 1))
        for _ in range(mol.bas_nctr(b)):
            atom += [mol.bas_atom(b)] * (2 * l + 1)
            ang += [l] * (2 * l + 1)
            mag += ms
    return (np.array(atom, dtype=np.int64), np.array(ang, dtype=np.int64),
            np.array(mag, dtype=np.int64))


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
    from pyscf import gto, scf

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
