"""Physical constants and unit conversions, all taken from PySCF's ``pyscf.data.nist``.

Inside rtml everything is in atomic units (Hartree, bohr, a.u. of time, e*bohr, a.u. of
field strength). Only geometry input/output uses Ångström. Convert at I/O boundaries with
these factors and name converted variables with their unit (``t_fs``, ``positions_angstrom``).
"""

from pyscf.data import nist

#: 1 bohr in Ångström (CODATA via pyscf.data.nist.BOHR)
BOHR_ANGSTROM: float = nist.BOHR
#: 1 Ångström in bohr
ANGSTROM_BOHR: float = 1.0 / nist.BOHR
#: 1 Hartree in eV (pyscf.data.nist.HARTREE2EV)
HARTREE_EV: float = nist.HARTREE2EV
#: 1 atomic unit of time in femtoseconds, hbar / E_h (pyscf.data.nist.HBAR, HARTREE2J)
AU_TIME_FS: float = nist.HBAR / nist.HARTREE2J * 1e15

#: The unit of every quantity stored in a trajectory file.
UNITS = {
    "positions": "angstrom",
    "time": "atomic_unit_of_time",
    "dt": "atomic_unit_of_time",
    "energy": "hartree",
    "dipole": "e*bohr",
    "field": "atomic_unit_of_electric_field",
    "density": "electrons (AO basis, dimensionless)",
    "overlap": "dimensionless",
    "core_hamiltonian": "hartree",
    "dipole_origin": "bohr",
    "frequency": "hartree (angular frequency, hbar=1)",
}
