"""The molecule ladder: committed files, MoleculeSpec, load_molecule, build_mole."""

import numpy as np
import pytest
from pyscf import dft

from rtml import InputError
from rtml.chem import LADDER, MoleculeSpec, build_mole, ladder, load_molecule, molecules_dir
from rtml.chem import write_geometry

#: name -> (nbf in 6-31G spherical, electrons, charge, multiplicity)
EXPECTED = {
    "h2p": (4, 1, 1, 2),
    "h2": (4, 2, 0, 1),
    "lih": (11, 4, 0, 1),
    "h2o": (13, 10, 0, 1),
    "nh3": (15, 10, 0, 1),
    "ch4": (17, 10, 0, 1),
    "c2h4": (26, 16, 0, 1),
    "c6h6": (66, 42, 0, 1),
}


def test_ladder_order():
    assert LADDER == ("h2p", "h2", "lih", "h2o", "nh3", "ch4", "c2h4", "c6h6")
    assert [spec.name for spec in ladder()] == list(LADDER)


@pytest.mark.parametrize("name", LADDER)
def test_nbf_electrons_multiplicity(name):
    nbf, n_electrons, charge, multiplicity = EXPECTED[name]
    spec = load_molecule(name)
    assert (spec.charge, spec.multiplicity, spec.n_electrons) == (charge, multiplicity, n_electrons)
    assert spec.atomic_numbers.dtype.kind == "i"
    mol = build_mole(spec)
    assert not mol.cart and not mol.symmetry
    assert mol.nao == nbf
    assert mol.nelectron == n_electrons and mol.spin == multiplicity - 1
    assert np.allclose(mol.atom_coords(unit="Angstrom"), spec.positions_angstrom, atol=1e-12)


@pytest.mark.parametrize("name", LADDER)
def test_ladder_files_describe_themselves(name):
    spec = load_molecule(name)
    assert (spec.basis, spec.xc) == ("6-31G", "pbe0")
    assert "geomeTRIC" in spec.source and "ase.build.molecule(" in spec.source
    assert (molecules_dir() / f"{name}.xyz").is_file()
    masses = build_mole(spec).atom_mass_list(isotope_avg=True)
    assert np.allclose(masses @ spec.positions_angstrom, 0.0, atol=1e-6)  # COM at origin


@pytest.mark.parametrize("name", ["h2", "lih", "h2o"])
def test_committed_geometries_are_pbe0_equilibria(name):
    mol = build_mole(load_molecule(name))
    mf = dft.RKS(mol, xc="pbe0")
    mf.conv_tol = 1e-10
    mf.kernel()
    assert mf.converged
    grad = mf.nuc_grad_method().kernel()
    assert np.linalg.norm(grad) < 1e-3


def test_unknown_molecule_names_the_name():
    with pytest.raises(InputError, match=r"unknown molecule 'xyz'; known: h2p, h2, lih"):
        load_molecule("xyz")


def test_load_is_case_insensitive():
    assert load_molecule("H2O").name == "h2o"


def test_load_from_path_uses_defaults(tmp_path):
    path = tmp_path / "oh.xyz"
    path.write_text("2\nhydroxyl radical\nO 0 0 0\nH 0 0 0.97\n")
    spec = load_molecule(path)
    assert spec.name == "oh"
    assert (spec.charge, spec.multiplicity, spec.basis, spec.xc) == (0, 2, "6-31G", "pbe0")
    write_geometry(path, ["O", "H"], [[0, 0, 0], [0, 0, 0.97]], {"charge": -1, "xc": "b3lyp"})
    spec = load_molecule(str(path))
    assert (spec.charge, spec.multiplicity, spec.xc, spec.n_electrons) == (-1, 1, "b3lyp", 10)


def test_missing_path_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read geometry file"):
        load_molecule(tmp_path / "nope.xyz")


def test_molecules_dir_env_override(tmp_path, monkeypatch):
    write_geometry(tmp_path / "h2.xyz", ["H", "H"], [[0, 0, -0.4], [0, 0, 0.4]], {"name": "h2"})
    monkeypatch.setenv("RTML_MOLECULES", str(tmp_path))
    assert molecules_dir() == tmp_path
    assert np.allclose(load_molecule("h2").positions_angstrom[:, 2], [-0.4, 0.4])
    with pytest.raises(InputError, match="'lih' has no geometry file"):
        load_molecule("lih")


def _spec(**kw):
    base = dict(name="h2", symbols=["H", "H"], positions_angstrom=[[0, 0, 0], [0, 0, 0.74]],
                charge=0, multiplicity=1)
    base.update(kw)
    return MoleculeSpec(**base)


@pytest.mark.parametrize("charge, multiplicity", [(0, 2), (1, 1), (0, 4), (2, 1), (3, 1)])
def test_impossible_charge_multiplicity(charge, multiplicity):
    with pytest.raises(InputError, match="'h2'"):
        _spec(charge=charge, multiplicity=multiplicity)


def test_build_mole_rechecks_spin_parity():
    spec = _spec()
    spec.multiplicity = 2
    with pytest.raises(InputError, match="parity"):
        build_mole(spec)


def test_build_mole_unparsable_basis_name_is_one_line():
    """A name PySCF's parser cannot map ('6-31Gxx' -> KeyError '631gxx') is an input error."""
    with pytest.raises(InputError, match="unknown basis '6-31Gxx'"):
        build_mole(load_molecule("h2"), basis="6-31Gxx")


def test_build_mole_unknown_basis():
    with pytest.raises(InputError, match="unknown basis 'no-such-basis'"):
        build_mole(_spec(), basis="no-such-basis")


def test_build_mole_positions_override():
    spec = _spec()
    mol = build_mole(spec, basis="sto-3g", positions_angstrom=[[0, 0, 0], [0, 0, 1.0]])
    assert mol.nao == 2
    assert np.isclose(mol.atom_coords(unit="Angstrom")[1, 2], 1.0)
    with pytest.raises(InputError, match=r"shape \(3, 3\); expected \(2, 3\)"):
        build_mole(spec, positions_angstrom=np.zeros((3, 3)))


def test_spec_validates_shapes_and_symbols():
    with pytest.raises(InputError, match="shape"):
        _spec(positions_angstrom=[[0, 0, 0]])
    with pytest.raises(InputError, match="element symbol 'Xx'"):
        _spec(symbols=["H", "Xx"])


def test_atoms_at_the_same_position_are_named():
    """Two atoms closer than 0.1 Å: one InputError naming them, wherever the geometry comes
    from (PySCF would stop with a traceback, "Ill geometry")."""
    with pytest.raises(InputError, match=r"molecule 'h2': atoms 1 \(H\) and 2 \(H\) are 0.000 Å"):
        _spec(positions_angstrom=[[0, 0, 0.3], [0, 0, 0.3]])
    with pytest.raises(InputError, match=r"atoms 1 \(H\) and 2 \(H\) are 0.050 Å apart"):
        build_mole(_spec(), positions_angstrom=[[0, 0, 0], [0, 0, 0.05]])
    water = load_molecule("h2o")
    squashed = water.positions_angstrom.copy()
    squashed[2] = squashed[0]
    with pytest.raises(InputError, match=r"atoms 1 \(O\) and 3 \(H\) are 0.000 Å apart"):
        build_mole(water, positions_angstrom=squashed)
    build_mole(_spec(), positions_angstrom=[[0, 0, 0], [0, 0, 0.2]])  # close, but allowed
