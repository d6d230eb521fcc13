"""rtml's unit constants are PySCF's, bit for bit (geometries convert exactly as PySCF's)."""

from pyscf.data import nist

from rtml.units import ANGSTROM_BOHR, AU_TIME_FS, BOHR_ANGSTROM, HARTREE_EV


def test_constants_equal_pyscf_exactly():
    assert BOHR_ANGSTROM == nist.BOHR
    assert ANGSTROM_BOHR == 1.0 / nist.BOHR
    assert HARTREE_EV == nist.HARTREE2EV
    assert AU_TIME_FS == nist.HBAR / nist.HARTREE2J * 1e15


def test_atomic_unit_of_time_is_about_24_attoseconds():
    assert abs(AU_TIME_FS - 0.0241888) < 1e-7
