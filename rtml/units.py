"""Physical constants and unit conversions, the values of PySCF's ``pyscf.data.nist``.

Inside rtml everything is in atomic units (Hartree, bohr, a.u. of time, e*bohr, a.u. of
field strength). Only geometry input/output uses Ångström. Convert at I/O boundaries with
these factors and name converted variables with their unit (``t_fs``, ``positions_angstrom``).

The numbers are written out rather than read from ``pyscf.data.nist`` so that reading a
trajectory or a spectrum does not import PySCF; ``tests/test_units.py`` checks that they
equal PySCF's to the last bit, so geometries convert exactly as PySCF converts them.
"""

#: 1 bohr in Ångström (pyscf.data.nist.BOHR: CODATA 2010, 0.52917721092(17) Å)
BOHR_ANGSTROM: float = 0.52917721092
#: 1 Ångström in bohr
ANGSTROM_BOHR: float = 1.0 / BOHR_ANGSTROM
#: 1 Hartree in eV (pyscf.data.nist.HARTREE2EV: CODATA 2014, 27.21138602(17) eV)
HARTREE_EV: float = 27.21138602
#: 1 atomic unit of time in femtoseconds, hbar / E_h
#: (pyscf.data.nist.HBAR / pyscf.data.nist.HARTREE2J * 1e15)
AU_TIME_FS: float = 0.02418884329314704

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
