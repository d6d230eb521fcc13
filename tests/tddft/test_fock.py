"""The engine's Fock build against PySCF, and exact exchange of complex densities."""

import numpy as np
import pytest
from pyscf import dft, gto, scf

from rtml.tddft import block_point_slices, build_fock_context, fock_and_energy
from rtml.chem import check_functional
from rtml import InputError

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"


def _mean_field(mol, xc):
    open_shell = mol.spin != 0
    if xc == "hf":
        return scf.UHF(mol) if open_shell else scf.RHF(mol)
    mf = dft.UKS(mol, xc=xc) if open_shell else dft.RKS(mol, xc=xc)
    mf.grids.level = 1
    return mf


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe", "pbe0", "tpss", "camb3lyp", "hf"])
@pytest.mark.parametrize("charge,spin", [(0, 0), (1, 1)], ids=["rks", "uks"])
def test_fock_matches_pyscf(xc, charge, spin):
    mol = gto.M(atom=WATER, basis="6-31g", charge=charge, spin=spin, verbose=0)
    mf = _mean_field(mol, xc)
    mf.conv_tol = 1e-9
    mf.kernel()
    dm = np.asarray(mf.make_rdm1())
    nspin = 1 if spin == 0 else 2
    ctx = build_fock_context(mol, xc, nspin, getattr(mf, "grids", None))
    fock, energy = fock_and_energy(ctx, dm.reshape(1, nspin, mol.nao, mol.nao).astype(complex))
    ref_fock = np.asarray(mf.get_fock(dm=dm)).reshape(nspin, mol.nao, mol.nao)
    assert np.abs(fock[0] - ref_fock).max() < 1e-10
    assert abs(energy[0] - mf.energy_tot(dm)) < 1e-10


def test_exact_exchange_sees_imaginary_density():
    """K[P] for complex Hermitian P equals sum (mu lambda|sigma nu) P_lambda sigma, Im part included."""
    mol = gto.M(atom="Li 0 0 0; H 0 0 1.6", basis="6-31g", verbose=0)
    mf = scf.RHF(mol).run(conv_tol=1e-10)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(mol.nao, mol.nao))
    dm = mf.make_rdm1() + 0.05j * (a - a.T)  # Hermitian, antisymmetric imaginary part
    ctx = build_fock_context(mol, "hf", 1)
    fock, energy = fock_and_energy(ctx, dm[None, None])
    eri = mol.intor("int2e")
    j = np.einsum("ijkl,kl->ij", eri, dm.real)
    k = np.einsum("ikjl,kj->il", eri, dm)
    ref = mf.get_hcore() + j - 0.5 * k
    assert np.abs(fock[0, 0] - ref).max() < 1e-12
    assert np.abs(fock[0, 0].imag).max() > 1e-3  # the antisymmetric exchange is really there
    ref_energy = (np.einsum("ij,ji", mf.get_hcore(), dm) + 0.5 * np.einsum("ij,ji", j, dm)
                  - 0.25 * np.einsum("ij,ji", k, dm)).real + mol.energy_nuc()
    assert abs(energy[0] - ref_energy) < 1e-10


def test_batch_of_densities_equals_one_by_one():
    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    mf = _mean_field(mol, "pbe0").run()
    ctx = build_fock_context(mol, "pbe0", 1, mf.grids)
    rng = np.random.default_rng(2)
    dms = []
    for _ in range(3):
        a = rng.normal(size=(mol.nao, mol.nao)) * 0.01
        dms.append(mf.make_rdm1() + (a + a.T) + 1j * (a - a.T))
    batch = np.array(dms)[:, None]
    fock_b, energy_b = fock_and_energy(ctx, batch)
    for i in range(3):
        fock_1, energy_1 = fock_and_energy(ctx, batch[i:i + 1])
        assert np.abs(fock_b[i] - fock_1[0]).max() < 1e-13
        assert abs(energy_b[i] - energy_1[0]) < 1e-12


@pytest.mark.parametrize("name", ["not-a-functional", "b3lyp+nope"])
def test_unknown_functional_is_an_input_error(name):
    with pytest.raises(InputError, match="functional"):
        check_functional(name)


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe0", "tpss"])
def test_blocked_screened_and_uncached_builds_agree(xc):
    """Small grid blocks, a memory limit that forces sub-blocks and recomputed AO values,
    and AO screening give the same Fock matrices as PySCF (1e-10) and as each other."""
    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    mf = _mean_field(mol, xc).run(conv_tol=1e-9)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(mol.nao, mol.nao)) * 0.01
    dm = mf.make_rdm1()
    dms = np.array([dm, dm + (a + a.T) + 1j * (a - a.T)])[:, None]
    default = build_fock_context(mol, xc, 1, mf.grids)
    tight = build_fock_context(mol, xc, 1, mf.grids, max_memory_mb=0.1, block_size=300)
    assert all(b.ao is None for b in tight.grid_blocks)  # 0.1 MB cannot hold the AO cache
    assert len(list(block_point_slices(tight, tight.grid_blocks[0], 2))) > 1  # work arrays split
    assert len(tight.grid_blocks) > len(default.grid_blocks)
    # screening really drops AOs on some blocks of small blocks far from an atom
    assert min(len(b.ao_index) for b in tight.grid_blocks) < mol.nao
    fock_d, energy_d = fock_and_energy(default, dms)
    fock_t, energy_t = fock_and_energy(tight, dms)
    assert np.abs(fock_d - fock_t).max() < 1e-12
    assert np.abs(energy_d - energy_t).max() < 1e-11
    assert np.abs(fock_t[0, 0] - mf.get_fock(dm=dm)).max() < 1e-10
    assert abs(energy_t[0] - mf.energy_tot(dm)) < 1e-10
