r"""NWChem ``rt_tddft`` input decks written from a PySCF molecule and an rtml field.

The deck reproduces the PySCF calculation exactly where NWChem allows it:

- geometry: PySCF's Cartesian coordinates in bohr (``units au``), with ``nocenter noautoz
  noautosym`` so NWChem neither moves nor reorients the molecule (the AO density matrices
  of both codes then refer to the same frame);
- basis: PySCF's own contraction data (``mol._basis``, un-normalised as in the library
  file) written as an explicit ``spherical`` basis block, so both codes use the same
  exponents and coefficients; only s and p shells are accepted (see
  :func:`rtml.tddft.nwchem.ao_permutation`);
- functional: :data:`XC_KEYWORDS` maps the PySCF names supported here onto NWChem ``xc``
  lines (``hf`` -> ``xc hfexch``, i.e. RT-TDHF);
- field: see :func:`field_blocks` and the table in :mod:`rtml.fields`.
"""

from __future__ import annotations

import math

import numpy as np

from rtml._errors import InputError
from rtml.fields import Field

__all__ = ["XC_KEYWORDS", "GRID_KEYWORDS", "write_rt_tddft_input", "field_blocks", "nwchem_xc",
           "tmax_for_last_print"]

#: PySCF functional name -> NWChem ``xc`` directive (same functional definitions).
XC_KEYWORDS = {
    "hf": "xc hfexch",
    "pbe0": "xc pbe0",
    "pbe": "xc xpbe96 cpbe96",
    "lda": "xc slater vwn_5",
    "lda,vwn": "xc slater vwn_5",
    "blyp": "xc becke88 lyp",
}

#: PySCF grid level -> NWChem ``grid`` quality (nearest in size; the grids differ in kind).
GRID_KEYWORDS = {0: "coarse", 1: "coarse", 2: "medium", 3: "fine", 4: "xfine", 5: "xfine",
                 6: "huge", 7: "huge", 8: "huge", 9: "huge"}

_AXES = "xyz"


def nwchem_xc(xc: str) -> str:
    """The NWChem ``xc`` line for a PySCF functional name; InputError if not supported."""
    key = xc.lower().replace(" ", "")
    if key not in XC_KEYWORDS:
        raise InputError(f"functional '{xc}' is not supported by the NWChem engine; "
                         f"choose one of {', '.join(sorted(XC_KEYWORDS))}")
    return XC_KEYWORDS[key]


def tmax_for_last_print(t_last: float, dt: float) -> float:
    """NWChem ``tmax`` whose last printed (and restart-saved) time is ``t_last``.

    NWChem runs ``nt = floor(tmax/dt) + 1`` time points and prints, saves restarts and
    steps at points 1 .. nt-1 only (times 0 .. (nt-2) dt), so the last point reported is
    ``(nt-2)*dt``. With ``tmax = t_last + 1.25 dt`` (a quarter step away from any rounding
    boundary) ``nt - 2 = t_last/dt``; NWChem then takes one extra step past ``t_last``,
    whose result is discarded. (Measured with NWChem 7.0.2: tmax 1.0, dt 0.2 gives nt 5.)
    """
    return t_last + 1.25 * dt


def field_blocks(field: Field, dt: float, geometry: str = "system",
                 delta_kick: bool = False) -> list[str]:
    r"""``field``/``excite`` sub-blocks of ``rt_tddft`` for one of our fields.

    NWChem couples :math:`-\boldsymbol\mu\cdot\mathbf E(t)` like rtml (a field along +z
    makes :math:`\delta\mu_z > 0`), accepts only x, y or z polarisations and sums all
    fields exciting a geometry, so a general polarisation **e** becomes one field per
    non-zero Cartesian component with ``max`` :math:`E_0 e_k`. Mapping:

    ``gaussian:E0:OMEGA:T0:SIGMA``
        ``type gaussian``, ``frequency OMEGA``, ``center T0``, ``width SIGMA``,
        ``phase pi/2``: NWChem's carrier is :math:`\sin(\omega t + \phi)`, ours
        :math:`\cos\omega t`, both referenced to t = 0.
    ``resonant:E0:OMEGA:T``
        ``type cw``, ``frequency OMEGA``, ``phase 0`` (:math:`E_0\sin\omega t`); NWChem's
        cw never switches off, so the engine drops this block for restart segments
        starting at t >= T (T must be a multiple of dt).
    ``kick`` and ``none``
        No block: NWChem's ``type delta`` is a one-step rectangle of height ``max`` whose
        effective strength and splitting error depend on dt, not our exact kick; the
        engine applies :math:`U = \exp(-i\kappa\,\mathbf e\cdot\mathbf D)` to NWChem's own
        ground-state density through its restart file instead. With ``delta_kick`` a kick
        becomes that ``type delta`` field (``max`` :math:`\kappa e_k`), for runs that time
        NWChem rather than reproduce our kick (``benchmarks/propagation.py``).
    """
    if field.kind == "none" or (field.kind == "kick" and not delta_kick):
        return []
    if not field.is_resolved:
        raise InputError(f"field '{field.to_spec()}' must be resolved (S<n>/B<n>/auto) first")
    if field.kind == "kick":
        phase = None
    elif field.kind == "gaussian":
        phase = math.pi / 2.0
    elif field.kind == "resonant":
        phase = 0.0
    else:  # pragma: no cover - Field validates its kind
        raise InputError(f"field type '{field.kind}' has no NWChem equivalent")
    lines: list[str] = []
    for k, e_k in enumerate(field.polarization):
        if e_k == 0.0:
            continue
        name = f"f{_AXES[k]}"
        kind = {"kick": "delta", "gaussian": "gaussian", "resonant": "cw"}[field.kind]
        lines += [f'  field "{name}"', f"    type {kind}", f"    polarization {_AXES[k]}"]
        if phase is not None:
            lines += [f"    frequency {field.omega!r}", f"    phase {phase!r}"]
        lines += [f"    max {field.amplitude * e_k!r}"]
        if field.kind == "gaussian":
            lines += [f"    center {field.t0!r}", f"    width {field.sigma!r}"]
        lines += ["  end", f'  excite "{geometry}" with "{name}"']
    return lines


def _basis_block(mol) -> list[str]:
    """Explicit NWChem basis block from PySCF's un-normalised contraction data."""
    lines = ['basis "ao basis" spherical']
    seen = set()
    for ia in range(mol.natm):
        symbol = mol.atom_symbol(ia)
        if symbol in seen:
            continue
        seen.add(symbol)
        shells = mol._basis[symbol]
        for shell in shells:
            l = int(shell[0])
            rows = shell[1:]
            if rows and not isinstance(rows[0], (list, tuple, np.ndarray)):
                rows = rows[1:]  # PySCF's optional kappa entry
            if l > 1:
                raise InputError(f"basis '{mol.basis}' has l={l} shells on {symbol}; the NWChem "
                                 "engine supports s and p shells only (d and higher shell "
                                 "order/normalisation against PySCF is not verified)")
            lines.append(f"  {symbol} {'SP'[l]}")
            for row in rows:
                lines.append("    " + "  ".join(f"{float(v):.12e}" for v in row))
    lines.append("end")
    return lines


def write_rt_tddft_input(mol, xc: str, field: Field, dt: float, tmax: float, *,
                         name: str = "rtml", directory: str = ".", start: bool = True,
                         grid_level: int = 3, interpol_tol: float = 1e-10,
                         restart_every_step: bool = True, geometry: str = "system",
                         print_every_step: bool = True, delta_kick: bool = False) -> str:
    """The text of an NWChem input deck for one RT-TDDFT run (atomic units).

    Args:
        mol: PySCF ``Mole`` (geometry, charge, spin, basis).
        xc: PySCF functional name (:data:`XC_KEYWORDS`).
        field: the applied field (:func:`field_blocks`; kicks and ``none`` add nothing).
        dt, tmax: NWChem ``dt`` and ``tmax`` (a.u.); see :func:`tmax_for_last_print`.
        name: job name (``start``/``restart`` database and file prefix).
        directory: ``permanent_dir`` and ``scratch_dir``.
        start: True for a fresh job (SCF then propagation from the SCF density); False
            for ``restart``: no SCF, propagation resumes from ``<name>.rt_restart``.
        grid_level: PySCF grid level, mapped by :data:`GRID_KEYWORDS`.
        interpol_tol: NWChem's Magnus self-consistency tolerance (its default is 1e-7).
        restart_every_step: ``nrestarts *`` (the restart file then holds the last
            printed time) or ``nrestarts 0``.
        print_every_step: ``nprints *`` (dipole, field and energy every step).
        delta_kick: write a kick as NWChem's own ``type delta`` field (:func:`field_blocks`).

    Returns:
        The deck as a string. ``rtml.tddft.nwchem.run_nwchem`` runs it.
    """
    if not dt > 0 or not tmax > 0:
        raise InputError(f"NWChem needs dt > 0 and tmax > 0, got dt={dt}, tmax={tmax}")
    xc_line = nwchem_xc(xc)
    open_shell = mol.spin != 0
    lines = [f"{'start' if start else 'restart'} {name}",
             f"permanent_dir {directory}", f"scratch_dir {directory}",
             "echo",
             f'geometry "{geometry}" units au nocenter noautoz noautosym']
    coords = mol.atom_coords(unit="Bohr")
    for ia in range(mol.natm):
        x, y, z = coords[ia]
        lines.append(f"  {mol.atom_symbol(ia)} {x:.14f} {y:.14f} {z:.14f}")
    lines += ["end", f'set geometry "{geometry}"']
    lines += _basis_block(mol)
    lines += ["dft"] + (["  odft"] if open_shell else []) + [f"  mult {mol.spin + 1}",
              f"  {xc_line}", f"  grid {GRID_KEYWORDS.get(int(grid_level), 'fine')}",
              "  convergence energy 1e-11 density 1e-10 gradient 1e-8",
              "  iterations 200", "  noprint \"final vectors analysis\"", "end",
              f"charge {mol.charge}"]
    if start:
        lines.append("task dft energy")
    if not start:
        # NWChem 7.0.2 resumes from <name>.rt_restart only when this rtdb flag is set
        lines.append("set rt_tddft:restart logical .true.")
    lines += ["rt_tddft", f"  tmax {tmax!r}", f"  dt {dt!r}",
              f"  tolerances interpol {interpol_tol!r}",
              "  nchecks 0",
              f"  nprints {'*' if print_every_step else 0}",
              f"  nrestarts {'*' if restart_every_step else 0}",
              "  print dipole field energy"]
    lines += field_blocks(field, dt, geometry, delta_kick)
    lines += ["end", "task dft rt_tddft", ""]
    return "\n".join(lines)
