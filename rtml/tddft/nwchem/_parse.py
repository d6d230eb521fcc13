r"""Readers (and one writer) for NWChem ``rt_tddft`` outputs and ``*.rt_restart`` files.

Output lines look like ``<rt_tddft>:   0.20000  v1 [v2 v3]   # Label``; with ``print
dipole field energy`` the labels used here are ``Dipole moment [<geom>]`` (total dipole,
electrons and nuclei, e*bohr, about NWChem's centre of mass), ``Applied E-field [<geom>]
(alpha spin)`` (a.u.) and ``Etot`` (Hartree: Ecore + Ecoul + Exc + Enuc, without the
field's interaction energy, like rtml's stored energy).

The restart file is ASCII: a header (``nmats``, ``nbf_ao``, ``it``, ``t``, ``checksum``)
then ``nmats`` complex AO density matrices, row-major, as (re, im) pairs with 10
significant digits (NWChem's ``e20.10``; :func:`write_rt_restart` keeps 11). Closed shell:
one matrix, the total density (Tr PS = N); open shell: alpha and beta.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml._errors import InputError

__all__ = ["RTOutput", "RestartSnapshot", "RESTART_HEADER", "parse_rt_output",
           "read_rt_restart", "parse_rt_restart", "write_rt_restart", "restart_checksum",
           "hermitian_density", "density_precision"]

#: First line of every restart file (and of every record of a harvested stream of them).
RESTART_HEADER = "RT-TDDFT restart file"
_LINE = re.compile(r"^<rt_tddft>:\s+(\S+)\s+(.*?)\s+#\s*(.+?)\s*$")
_COM = re.compile(r"Center of mass\s*=\s*\(\s*(\S+),\s*(\S+),\s*(\S+)\)")


@dataclass
class RTOutput:
    """Time series parsed from an NWChem RT-TDDFT output (one value per printed time).

    Attributes
    ----------
    time : (n,) array, a.u.
    dipole : (n, 3) array, e*bohr, about ``dipole_origin``
    field : (n, 3) array, a.u. (alpha-spin field; NWChem applies it to both spins)
    energy : (n,) array, Hartree
    dipole_origin : (3,) array, bohr (NWChem's centre of mass)
    geometry : str
    """

    time: np.ndarray
    dipole: np.ndarray
    field: np.ndarray
    energy: np.ndarray
    dipole_origin: np.ndarray
    geometry: str


def parse_rt_output(text: str, geometry: str | None = None) -> RTOutput:
    """Parse the dipole, field and energy lines of an NWChem ``rt_tddft`` output.

    Times printed more than once (restarted runs concatenated) keep their last value.
    Raises InputError when the text holds no RT-TDDFT dipole lines.
    """
    series: dict[str, dict[float, list[float]]] = {"dipole": {}, "field": {}, "energy": {}}
    origin = np.zeros(3)
    for raw in text.splitlines():
        m = _COM.search(raw)
        if m:
            origin = np.array([float(v) for v in m.groups()])
            continue
        m = _LINE.match(raw.strip())
        if not m:
            continue
        t_text, values, label = m.groups()
        try:
            t = round(float(t_text), 6)
            nums = [float(v.replace("D", "E")) for v in values.split()]
        except ValueError:
            continue
        if label.startswith("Dipole moment"):
            name = label[label.find("[") + 1:label.find("]")] if "[" in label else ""
            if geometry is None:
                geometry = name
            if name == geometry and len(nums) == 3:
                series["dipole"][t] = nums
        elif label.startswith("Applied E-field") and "beta" not in label and len(nums) == 3:
            name = label[label.find("[") + 1:label.find("]")] if "[" in label else ""
            if geometry is None or name == geometry:
                series["field"][t] = nums
        elif label == "Etot" and len(nums) == 1:
            series["energy"][t] = nums
    if not series["dipole"]:
        raise InputError("no RT-TDDFT dipole lines ('<rt_tddft>: ... # Dipole moment') found; "
                         "was the run made with 'print dipole'?")
    times = np.array(sorted(series["dipole"]))
    def column(name, width):
        table = series[name]
        out = np.full((len(times), width), np.nan)
        for i, t in enumerate(times):
            if t in table:
                out[i] = table[t]
        return out
    return RTOutput(time=times, dipole=column("dipole", 3), field=column("field", 3),
                    energy=column("energy", 1)[:, 0], dipole_origin=origin,
                    geometry=geometry or "")


@dataclass
class RestartSnapshot:
    """One ``rt_restart`` file: step index ``it`` (1-based), time (a.u.) and densities.

    ``density`` has shape (nmats, nbf, nbf), complex, in NWChem's AO order.
    """

    it: int
    time: float
    density: np.ndarray


def read_rt_restart(path: str | Path) -> RestartSnapshot:
    """Read an NWChem ``*.rt_restart`` file (InputError if malformed)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"cannot read restart file '{path}': {err.strerror}") from None
    return parse_rt_restart(text, f"restart file '{path}'")


def parse_rt_restart(text: str, source: str = "restart record") -> RestartSnapshot:
    """One restart record (the text of an ``*.rt_restart`` file); ``source`` names it in
    the InputError raised when it is malformed."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != RESTART_HEADER or len(lines) < 8:
        raise InputError(f"{source} is not an NWChem RT-TDDFT restart file")
    header = {}
    for line in lines[2:7]:
        key, _, value = line.partition(" ")
        header[key.strip()] = value.strip()
    try:
        nmats, nbf, it = int(header["nmats"]), int(header["nbf_ao"]), int(header["it"])
        t = float(header["t"])
        values = np.array(" ".join(lines[7:]).split(), dtype=float)
    except (KeyError, ValueError):
        raise InputError(f"{source}: malformed header or numbers") from None
    if values.size != 2 * nmats * nbf * nbf:
        raise InputError(f"{source}: expected {2 * nmats * nbf * nbf} numbers "
                         f"for {nmats} x {nbf}x{nbf} complex matrices, found {values.size}")
    density = (values[0::2] + 1j * values[1::2]).reshape(nmats, nbf, nbf)
    return RestartSnapshot(it=it, time=t, density=density)


def hermitian_density(density: np.ndarray) -> np.ndarray:
    r""":math:`(P + P^\dagger)/2` of restart densities (..., nbf, nbf), exactly Hermitian.

    NWChem's own P is Hermitian to rounding (~1e-15), but it writes each element with 10
    significant digits (``e20.10``): where :math:`P_{\mu\nu}` and :math:`P_{\nu\mu}^*`
    straddle a rounding boundary they are written one unit of the last digit apart (1e-9
    for elements of 1-10), and a file read back fails a 1e-10 Hermiticity check (measured
    before: max|P - P^\dagger| = 1.6e-9, H2O RT-TDHF). The Hermitian part is the same density
    to the same precision (:func:`density_precision`).
    """
    return 0.5 * (density + np.conj(np.swapaxes(density, -1, -2)))


def density_precision(density: np.ndarray) -> float:
    r"""Bound on the rounding of each element of a density read from NWChem's restart
    format: half a unit in the 10th significant digit of its largest element, written
    :math:`0.d_1 \dots d_{10}\times 10^{e}`, i.e. :math:`5\cdot 10^{e - 11}` (a.u.; 5e-10
    for a largest element between 1 and 10)."""
    largest = float(np.abs(density).max(initial=0.0))
    if largest == 0.0:
        return 0.0
    exponent = int(f"{largest:.9e}".split("e")[1]) + 1  # NWChem's 0.ddddddddddE+ee form
    return 5.0 * 10.0 ** (exponent - 11)


def restart_checksum(density: np.ndarray) -> float:
    """NWChem's restart checksum: sum over matrices of 1.67 sum|Re P| + 0.12 sqrt(max|Re P|).

    (GA's ``ga_norm1`` and ``ga_norm_infinity`` of the real part; reproduces the value in
    NWChem's own files. NWChem rejects a file whose checksum is off by more than 1e-4.)
    """
    total = 0.0
    for mat in np.abs(np.real(density)):
        total += 1.67 * mat.sum() + 0.12 * np.sqrt(mat.max())
    return float(total)


def write_rt_restart(path: str | Path, it: int, time: float, density: np.ndarray) -> Path:
    """Write an NWChem ``rt_restart`` file (format of NWChem's own writer)."""
    path = Path(path)
    density = np.asarray(density, dtype=complex)
    nmats, nbf = density.shape[0], density.shape[1]
    out = [RESTART_HEADER, "created   by rtml", f"nmats     {nmats}",
           f"nbf_ao    {nbf}", f"it        {it}", f"t         {time:20.12E}",
           f"checksum  {restart_checksum(density):20.12E}"]
    body = "".join(f"{z.real:20.10E}{z.imag:20.10E}" for z in density.reshape(-1))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n" + body + "\n")
    tmp.replace(path)
    return path
