r"""Deterministic sampling of distorted geometries around an equilibrium structure.

:func:`sample_geometries` returns the equilibrium geometry (id ``eq``) followed by a
seeded selection from a fixed list of candidates:

``stretch``
    Each symmetry-distinct bond ``b<k>`` stretched by -20, -10, +10, +20 % (ids
    ``stretch-b<k>-{m20,m10,p10,p20}``).
``bend``
    Each symmetry-distinct bond angle ``a<k>`` opened/closed by 5 and 10 degrees (ids
    ``bend-a<k>-{m10,m5,p5,p10}``).
``normal_mode``
    Displacements along the lowest-frequency normal modes to the classical turning
    points of the v = 1 and v = 2 vibrational levels (ids ``mode<i>-{p1,m1,p2,m2}``,
    ``i`` counting all 3N modes, the 5 or 6 rigid-body ones first).

If more samples are requested than there are candidates, the remainder are random
normal-mode displacements drawn from the harmonic ground-state distribution (ids
``random-s<seed>-<n>``). Positions are in Ångström throughout; normal coordinates are
mass-weighted atomic units (bohr times sqrt(electron mass)).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from ase.data import atomic_numbers, covalent_radii
from pyscf.data import elements, nist
from pyscf.hessian import thermo
from scipy.spatial.transform import Rotation

from rtml._errors import ConvergenceError, InputError
from rtml.chem._ladder import MoleculeSpec, build_mole
from rtml.chem._scf import converged_scf
from rtml.units import BOHR_ANGSTROM

#: Candidate kinds, in the order their candidates are listed.
KINDS = ("stretch", "bend", "normal_mode")

#: Relative bond stretches (fraction of the equilibrium length).
STRETCHES = (-0.20, -0.10, 0.10, 0.20)
#: Bond-angle changes in degrees.
BENDS_DEG = (-10.0, -5.0, 5.0, 10.0)
#: Vibrational levels whose classical turning points are used.
MODE_QUANTA = (1, 2)
#: Bond criterion: d_AB < BOND_SCALE * (r_cov(A) + r_cov(B)) (ASE covalent radii).
BOND_SCALE = 1.25
#: Two distances/descriptors are "the same" (symmetry-equivalent) within this, Å.
EQUIVALENCE_TOL_ANGSTROM = 1e-3
#: Angles closer to 180 degrees than this have no plane and are not bent.
LINEAR_TOL_DEG = 5.0
#: Modes below this (or imaginary) are not used, cm^-1.
MIN_FREQUENCY_CM = 10.0


class GeometrySample(NamedTuple):
    """One sampled geometry.

    Attributes:
        id : str
            Stable identifier, e.g. ``eq``, ``stretch-b0-p10``, ``bend-a1-m5``,
            ``mode6-p1``, ``random-s0-3``.
        kind : str
            ``equilibrium``, ``stretch``, ``bend``, ``normal_mode`` or ``random``.
        description : str
            Human-readable account of the distortion.
        positions_angstrom : ndarray, shape (natm, 3)
            Cartesian positions in Ångström.
    """

    id: str
    kind: str
    description: str
    positions_angstrom: np.ndarray


class NormalModes(NamedTuple):
    """Harmonic normal modes (rigid-body motions projected out), ascending frequency.

    Attributes:
        index : ndarray of int, shape (nvib,)
            Mode number among all 3N modes (rigid-body modes are 0..n_rigid-1).
        frequencies_cm : ndarray, shape (nvib,)
            Harmonic wavenumbers in cm^-1 (negative = imaginary).
        omega_au : ndarray, shape (nvib,)
            Angular frequencies in Hartree (hbar = 1); negative = imaginary.
        modes_mw : ndarray, shape (nvib, natm, 3)
            Orthonormal mass-weighted eigenvectors :math:`L_{k,A}`.
        masses_au : ndarray, shape (natm,)
            Nuclear masses in electron masses (isotope-averaged).
        level : str
            ``"<xc>/<basis>"`` of the Hessian.
    """

    index: np.ndarray
    frequencies_cm: np.ndarray
    omega_au: np.ndarray
    modes_mw: np.ndarray
    masses_au: np.ndarray
    level: str


# --------------------------------------------------------------------------- geometry


def _masses_amu(symbols) -> np.ndarray:
    """Isotope-averaged masses in amu, shape (natm,) (PySCF's table)."""
    return np.array([elements.MASSES[elements.charge(s)] for s in symbols], dtype=float)


def bond_angle_deg(positions, i, c, k) -> float:
    """Angle i-c-k in degrees at the central atom ``c``; ``positions`` (natm, 3), any length unit."""
    a = positions[i] - positions[c]
    b = positions[k] - positions[c]
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def find_bonds(symbols, positions_angstrom) -> list[tuple[int, int]]:
    """Covalent bonds as sorted pairs ``(i, j)``, ``i < j``.

    A pair is bonded if :math:`d_{ij} < 1.25 (r_i + r_j)` (ASE covalent radii). If that
    leaves the molecule in several pieces, the shortest inter-piece contact is added
    until it is connected (this bonds e.g. the long H2+ ion).
    """
    pos = np.asarray(positions_angstrom, dtype=float)
    natm = len(pos)
    radii = np.array([covalent_radii[atomic_numbers[s]] for s in symbols])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonded = dist < BOND_SCALE * (radii[:, None] + radii[None])
    np.fill_diagonal(bonded, False)
    while natm > 1:
        comp = _component(bonded, 0)
        if len(comp) == natm:
            break
        inside = np.zeros(natm, bool)
        inside[list(comp)] = True
        masked = np.where(inside[:, None] & ~inside[None], dist, np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        bonded[i, j] = bonded[j, i] = True
    return [(i, j) for i in range(natm) for j in range(i + 1, natm) if bonded[i, j]]


def _component(adjacency, start, cut=None) -> set[int]:
    """Atoms reachable from ``start`` in the bond graph without crossing edge ``cut``."""
    seen = {start}
    stack = [start]
    while stack:
        a = stack.pop()
        for b in np.flatnonzero(adjacency[a]):
            b = int(b)
            if cut is not None and {a, b} == set(cut):
                continue
            if b not in seen:
                seen.add(b)
                stack.append(b)
    return seen


def _adjacency(natm, bonds) -> np.ndarray:
    adjacency = np.zeros((natm, natm), bool)
    for i, j in bonds:
        adjacency[i, j] = adjacency[j, i] = True
    return adjacency


def _moving_group(adjacency, fixed, end) -> list[int]:
    """Atoms that move with ``end`` when the bond ``fixed``-``end`` is distorted.

    The piece containing ``end`` after cutting the bond; if the bond is in a ring
    (no such piece), ``end`` plus its terminal (single-bonded) neighbours.
    """
    side = _component(adjacency, end, cut=(fixed, end))
    if fixed not in side:
        return sorted(side)
    terminal = [
        int(b) for b in np.flatnonzero(adjacency[end]) if b != fixed and adjacency[b].sum() == 1
    ]
    return sorted([end] + terminal)


def _atom_descriptors(symbols, positions) -> list[np.ndarray]:
    """Per atom: sorted distances to every other atom, grouped by element (Å)."""
    pos = np.asarray(positions, dtype=float)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    elements = sorted(set(symbols))
    out = []
    for i in range(len(symbols)):
        parts = [
            np.sort([dist[i, j] for j in range(len(symbols)) if j != i and symbols[j] == el])
            for el in elements
        ]
        out.append(np.concatenate(parts))
    return out


def _group(items, same) -> list[list]:
    """Group ``items`` (in order) into classes; ``same(a, b)`` tests equivalence."""
    groups: list[list] = []
    for item in items:
        for g in groups:
            if same(g[0], item):
                g.append(item)
                break
        else:
            groups.append([item])
    return groups


def _close(a, b) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=0, atol=EQUIVALENCE_TOL_ANGSTROM)


def distinct_bonds(symbols, positions_angstrom) -> list[list[tuple[int, int]]]:
    """Bonds grouped into symmetry-equivalence classes, in order of first appearance.

    Two bonds are equivalent when their elements, lengths and both end atoms' sorted
    distance lists agree within 1e-3 Å (either end order).
    """
    bonds = find_bonds(symbols, positions_angstrom)
    desc = _atom_descriptors(symbols, positions_angstrom)

    def key(i, j):
        return np.concatenate([desc[i], [-1.0], desc[j]]), (symbols[i], symbols[j])

    def same(b1, b2):
        v1, e1 = key(*b1)
        return any(e1 == e2 and _close(v1, v2) for v2, e2 in (key(*b2), key(*b2[::-1])))

    return _group(bonds, same)


def distinct_angles(symbols, positions_angstrom) -> list[list[tuple[int, int, int]]]:
    """Bond angles ``(i, c, k)`` (``c`` central, ``i < k``) grouped by equivalence.

    Angles within 5 degrees of linear are left out (their plane is undefined).
    """
    pos = np.asarray(positions_angstrom, dtype=float)
    adjacency = _adjacency(len(symbols), find_bonds(symbols, pos))
    desc = _atom_descriptors(symbols, pos)
    angles = []
    for c in range(len(symbols)):
        nbrs = [int(n) for n in np.flatnonzero(adjacency[c])]
        for x, i in enumerate(nbrs):
            for k in nbrs[x + 1 :]:
                if bond_angle_deg(pos, i, c, k) < 180.0 - LINEAR_TOL_DEG:
                    angles.append((i, c, k))

    def key(i, c, k):
        d = [np.linalg.norm(pos[i] - pos[k])]
        return np.concatenate([desc[c], [-1.0], desc[i], [-1.0], desc[k], d]), (
            symbols[i], symbols[c], symbols[k])

    def same(a1, a2):
        v1, e1 = key(*a1)
        return any(e1 == e2 and _close(v1, v2) for v2, e2 in (key(*a2), key(*a2[::-1])))

    return _group(angles, same)


def stretch_bond(symbols, positions_angstrom, bond, fraction) -> tuple[np.ndarray, list[int]]:
    """Change the length of ``bond = (i, j)`` to ``(1 + fraction) * d_ij``.

    Diatomics are stretched symmetrically (each atom moves by half the change). Otherwise
    the lighter of the two groups that move with each end (see :func:`_moving_group`)
    moves along the bond by the full change; if both weigh the same, each moves by half.

    Returns:
        positions (natm, 3) in Å and the indices of the atoms moved.
    """
    pos = np.array(positions_angstrom, dtype=float)
    i, j = bond
    vec = pos[j] - pos[i]
    length = np.linalg.norm(vec)
    unit = vec / length
    delta = fraction * length
    if len(pos) == 2:
        pos[i] -= 0.5 * delta * unit
        pos[j] += 0.5 * delta * unit
        return pos, [i, j]
    adjacency = _adjacency(len(pos), find_bonds(symbols, positions_angstrom))
    mass = _masses_amu(symbols)
    side_i = _moving_group(adjacency, j, i)
    side_j = _moving_group(adjacency, i, j)
    m_i, m_j = mass[side_i].sum(), mass[side_j].sum()
    if abs(m_i - m_j) < 1e-6:
        pos[side_i] -= 0.5 * delta * unit
        pos[side_j] += 0.5 * delta * unit
        return pos, sorted(side_i + side_j)
    if m_j < m_i:
        pos[side_j] += delta * unit
        return pos, side_j
    pos[side_i] -= delta * unit
    return pos, side_i


def bend_angle(symbols, positions_angstrom, angle, delta_deg) -> tuple[np.ndarray, list[int]]:
    """Open the angle ``(i, c, k)`` by ``delta_deg`` degrees (close it if negative).

    The lighter end group (atom plus what moves with it, :func:`_moving_group`; ``k`` on
    a tie) is rotated rigidly about the axis through atom ``c`` normal to the i-c-k plane,
    so the angle becomes exactly :math:`\\theta + \\delta` and all bond lengths to ``c``
    are kept.

    Returns:
        positions (natm, 3) in Å and the indices of the atoms moved.
    """
    pos = np.array(positions_angstrom, dtype=float)
    i, c, k = angle
    adjacency = _adjacency(len(pos), find_bonds(symbols, positions_angstrom))
    mass = _masses_amu(symbols)
    side_i = _moving_group(adjacency, c, i)
    side_k = _moving_group(adjacency, c, k)
    normal = np.cross(pos[i] - pos[c], pos[k] - pos[c])
    normal /= np.linalg.norm(normal)
    # rotating about +normal moves k away from i (right-hand rule), -normal moves i away from k
    if mass[side_i].sum() < mass[side_k].sum() - 1e-6:
        moved, axis = side_i, -normal
    else:
        moved, axis = side_k, normal
    rot = Rotation.from_rotvec(np.radians(delta_deg) * axis)
    pos[moved] = pos[c] + rot.apply(pos[moved] - pos[c])
    return pos, moved


# --------------------------------------------------------------------------- normal modes


def _degenerate_blocks(freq_cm) -> list[list[int]]:
    """Consecutive runs of frequencies within max(1 cm^-1, 1e-3 * |f|) of each other."""
    blocks: list[list[int]] = []
    for n, f in enumerate(freq_cm):
        if blocks and abs(f - freq_cm[blocks[-1][-1]]) <= max(1.0, 1e-3 * abs(f)):
            blocks[-1].append(n)
        else:
            blocks.append([n])
    return blocks


def canonical_basis(vectors) -> np.ndarray:
    """A machine-independent orthonormal basis of the span of ``vectors`` (d, n).

    Eigenvectors of degenerate (and, up to sign, non-degenerate) modes are not unique.
    Project the Cartesian unit vectors e_1, e_2, ... onto the span and Gram-Schmidt them,
    each time taking the first e_m whose remaining projection is at least half the
    largest, so the result depends only on the subspace and the coordinate frame.
    """
    v = np.asarray(vectors, dtype=float)
    proj = v.T @ v  # (n, n) projector onto the span
    basis: list[np.ndarray] = []
    for _ in range(len(v)):
        res = proj.copy()
        for b in basis:
            res -= np.outer(b, b @ res)
        norms = np.linalg.norm(res, axis=0)
        m = int(np.flatnonzero(norms >= 0.5 * norms.max())[0])
        basis.append(res[:, m] / norms[m])
    return np.array(basis)


#: Step of the finite-difference Hessian, bohr.
FD_STEP_BOHR = 1e-3


def _hessian(mf) -> np.ndarray:
    """Nuclear Hessian :math:`\\partial^2 E / \\partial R_{Ax} \\partial R_{By}` in Eh/bohr^2.

    Shape (natm, natm, 3, 3), PySCF's layout ``hess[A, B, x, y]``.

    Analytic (``mf.Hessian()``) except when a spin channel is empty (one-electron
    systems such as H2+, where PySCF's UHF/UKS Hessian fails): then central differences
    of analytic gradients with step :data:`FD_STEP_BOHR`, symmetrised.
    """
    if min(mf.mol.nelec) > 0:
        return mf.Hessian().kernel()
    return finite_difference_hessian(mf)


def finite_difference_hessian(mf, step_bohr=FD_STEP_BOHR) -> np.ndarray:
    """Nuclear Hessian of the converged SCF ``mf`` by central finite differences of analytic
    gradients, (natm, natm, 3, 3) in PySCF's layout ``hess[A, B, x, y]``, Eh/bohr^2.

    .. math:: H_{Ax,By} \\approx [g_{By}(R + h e_{Ax}) - g_{By}(R - h e_{Ax})] / 2h,
        \\quad H \\leftarrow (H + H^T)/2
    """
    mol = mf.mol
    scanner = mf.nuc_grad_method().as_scanner()
    coords = mol.atom_coords()  # bohr
    natm = mol.natm
    hess = np.zeros((natm, 3, natm, 3))
    for a in range(natm):
        for x in range(3):
            grads = []
            for step in (step_bohr, -step_bohr):
                displaced = coords.copy()
                displaced[a, x] += step
                _, grad = scanner(mol.set_geom_(displaced, unit="Bohr", inplace=False))
                if not scanner.converged:
                    raise ConvergenceError("SCF of the finite-difference Hessian did not converge")
                grads.append(grad)
            hess[a, x] = (grads[0] - grads[1]) / (2 * step_bohr)
    hess = 0.5 * (hess + hess.transpose(2, 3, 0, 1))
    return hess.transpose(0, 2, 1, 3)


def normal_modes(spec: MoleculeSpec, xc=None, basis=None, positions_angstrom=None, verbose=0):
    """Harmonic normal modes of ``spec`` from an analytic PySCF Hessian.

    Runs an SCF (RHF/UHF if ``xc == "hf"``, else RKS/UKS) at ``positions_angstrom``
    (default: the spec's), computes ``mf.Hessian().kernel()`` and passes it to
    :func:`pyscf.hessian.thermo.harmonic_analysis` (translations and rotations
    projected out). Degenerate modes are rotated to a canonical basis
    (:func:`canonical_basis`) so results do not depend on the eigensolver.

    Args:
        spec : MoleculeSpec
        xc, basis : str, optional
            Level of the Hessian; default ``spec.xc`` / ``spec.basis``. Away from that
            level's equilibrium the frequencies are those of a non-stationary point.

    Returns:
        :class:`NormalModes` (nvib = 3N-5 or 3N-6 modes, ascending frequency).
    """
    xc = spec.xc if xc is None else xc
    basis = spec.basis if basis is None else basis
    mol = build_mole(spec, basis=basis, positions_angstrom=positions_angstrom, verbose=verbose)
    mf = converged_scf(mol, xc)
    hess = _hessian(mf)  # (natm, natm, 3, 3), Eh/bohr^2
    mass_amu = mol.atom_mass_list(isotope_avg=True)
    res = thermo.harmonic_analysis(mol, hess, imaginary_freq=False, mass=mass_amu)
    freq_cm = np.asarray(res["freq_wavenumber"], dtype=float)
    natm = mol.natm
    # norm_mode = L / sqrt(m_amu)  ->  orthonormal mass-weighted L, shape (nvib, 3N)
    modes = (res["norm_mode"] * np.sqrt(mass_amu)[None, :, None]).reshape(len(freq_cm), -1)
    for block in _degenerate_blocks(freq_cm):
        modes[block] = canonical_basis(modes[block])
    omega_au = freq_cm / (nist.HARTREE2WAVENUMBER)
    return NormalModes(
        index=np.arange(3 * natm - len(freq_cm), 3 * natm),
        frequencies_cm=freq_cm,
        omega_au=omega_au,
        modes_mw=modes.reshape(len(freq_cm), natm, 3),
        masses_au=mass_amu * nist.AMU2AU,
        level=f"{xc}/{basis}",
    )


def mode_displacement_angstrom(modes: NormalModes, k: int, q) -> np.ndarray:
    """Cartesian displacement (natm, 3) in Å for normal coordinate ``q`` along mode ``k``.

    .. math:: \\Delta x_A = Q\\, L_{k,A} / \\sqrt{M_A}

    with :math:`Q` in bohr·sqrt(m_e), :math:`M_A` in electron masses; equivalently
    :math:`\\Delta x = q\\, \\hat d_k` with :math:`q = Q/\\sqrt{\\mu_k}` along the unit
    Cartesian mode :math:`\\hat d_k` with reduced mass :math:`\\mu_k`. The centre of mass
    does not move because :math:`L_k` is orthogonal to translations.
    """
    disp_bohr = q * modes.modes_mw[k] / np.sqrt(modes.masses_au)[:, None]
    return disp_bohr * BOHR_ANGSTROM


def turning_point_au(omega_au: float, v: int) -> float:
    """Classical turning point of level ``v`` of a harmonic mode, mass-weighted a.u.

    .. math:: \\tfrac12 \\omega^2 Q^2 = (v + \\tfrac12)\\omega
        \\;\\Rightarrow\\; Q_v = \\sqrt{(2v+1)/\\omega}

    i.e. :math:`q_v = \\sqrt{(2v+1)/(\\mu\\omega)}` in bohr along a unit Cartesian mode
    of reduced mass :math:`\\mu` (electron masses). v = 1, 2 reach about 2.4 and 3.2
    ground-state standard deviations.
    """
    return float(np.sqrt((2 * v + 1) / omega_au))


def _selected_modes(modes: NormalModes) -> list[int]:
    """The two lowest real modes plus any degenerate with the second (1 for diatomics)."""
    real = [n for n, f in enumerate(modes.frequencies_cm) if f > MIN_FREQUENCY_CM]
    if len(real) <= 2:
        return real
    chosen = real[:2]
    for block in _degenerate_blocks(modes.frequencies_cm):
        if chosen[-1] in block:
            chosen = sorted(set(chosen) | {n for n in block if n in real})
    return chosen


# --------------------------------------------------------------------------- candidates


def _signed(value, unit="") -> str:
    """``p10``/``m5`` tags for ids."""
    text = f"{abs(value):g}"
    return ("p" if value > 0 else "m") + text + unit


def _stretch_candidates(spec) -> list[GeometrySample]:
    out = []
    for g, group in enumerate(distinct_bonds(spec.symbols, spec.positions_angstrom)):
        i, j = group[0]
        d0 = np.linalg.norm(spec.positions_angstrom[j] - spec.positions_angstrom[i])
        for frac in STRETCHES:
            pos, moved = stretch_bond(spec.symbols, spec.positions_angstrom, (i, j), frac)
            pct = round(100 * frac)
            desc = (
                f"bond {spec.symbols[i]}{i}-{spec.symbols[j]}{j} (class b{g}, {len(group)} "
                f"bond(s)) {pct:+d} %: {d0:.4f} -> {d0 * (1 + frac):.4f} A, moved atoms {moved}"
            )
            out.append(GeometrySample(f"stretch-b{g}-{_signed(pct)}", "stretch", desc, pos))
    return out


def _bend_candidates(spec) -> list[GeometrySample]:
    out = []
    for g, group in enumerate(distinct_angles(spec.symbols, spec.positions_angstrom)):
        i, c, k = group[0]
        theta = bond_angle_deg(spec.positions_angstrom, i, c, k)
        for delta in BENDS_DEG:
            pos, moved = bend_angle(spec.symbols, spec.positions_angstrom, (i, c, k), delta)
            s = spec.symbols
            desc = (
                f"angle {s[i]}{i}-{s[c]}{c}-{s[k]}{k} (class a{g}, {len(group)} angle(s)) "
                f"{delta:+g} deg: {theta:.2f} -> {theta + delta:.2f} deg, moved atoms {moved}"
            )
            out.append(GeometrySample(f"bend-a{g}-{_signed(delta)}", "bend", desc, pos))
    return out


def _mode_candidates(spec, modes: NormalModes) -> list[GeometrySample]:
    out = []
    for k in _selected_modes(modes):
        omega = modes.omega_au[k]
        for v in MODE_QUANTA:
            for sign in (+1, -1):
                q = sign * turning_point_au(omega, v)
                disp = mode_displacement_angstrom(modes, k, q)
                label = f"mode{modes.index[k]}-{_signed(sign * v)}"
                desc = (
                    f"normal mode {modes.index[k]} ({modes.frequencies_cm[k]:.1f} cm^-1, "
                    f"{modes.level} Hessian) to the {'+' if sign > 0 else '-'} turning point "
                    f"of v={v}: Q={q:+.3f} bohr*sqrt(me), max |dx| "
                    f"{np.abs(disp).max():.4f} A"
                )
                out.append(
                    GeometrySample(label, "normal_mode", desc, spec.positions_angstrom + disp)
                )
    return out


def _random_samples(spec, modes: NormalModes, n, rng, seed) -> list[GeometrySample]:
    """``n`` random displacements, every real mode drawn from the v=0 distribution.

    .. math:: Q_k \\sim \\mathcal N(0, 1/(2\\omega_k)),\\quad
        \\Delta x_A = \\sum_k Q_k L_{k,A}/\\sqrt{M_A}
    """
    real = [k for k, f in enumerate(modes.frequencies_cm) if f > MIN_FREQUENCY_CM]
    if not real:
        raise InputError(
            f"molecule {spec.name!r} has no vibrational modes to draw random samples from"
        )
    sigma = np.sqrt(0.5 / modes.omega_au[real])
    out = []
    for r in range(n):
        q = rng.standard_normal(len(real)) * sigma
        disp = sum(mode_displacement_angstrom(modes, k, qk) for k, qk in zip(real, q))
        desc = (
            f"random ground-state harmonic displacement ({len(real)} modes, {modes.level} "
            f"Hessian, seed {seed}), max |dx| {np.abs(disp).max():.4f} A"
        )
        out.append(
            GeometrySample(f"random-s{seed}-{r}", "random", desc, spec.positions_angstrom + disp)
        )
    return out


def _check_sampling_args(n_samples, seed, kinds) -> tuple[int, int, tuple[str, ...]]:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"n_samples must be a positive integer, got {n_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError(f"unknown sample kind {unknown[0]!r}; known: {', '.join(KINDS)}")
    return int(n_samples), int(seed), tuple(k for k in KINDS if k in kinds)


def sample_geometries(
    spec: MoleculeSpec,
    n_samples: int,
    seed: int = 0,
    kinds=KINDS,
    hessian_xc=None,
    hessian_basis=None,
) -> list[GeometrySample]:
    r"""Equilibrium geometry plus ``n_samples - 1`` deterministic distortions.

    Candidates, in this fixed order (``kinds`` picks which are built; its order does
    not matter):

    * ``stretch``: each symmetry-distinct bond class ``b<g>`` (representative = first
      bond of the class) by -20, -10, +10, +20 % (:func:`stretch_bond`);
    * ``bend``: each distinct angle class ``a<g>`` by -10, -5, +5, +10 degrees
      (:func:`bend_angle`);
    * ``normal_mode``: the two lowest-frequency real modes (plus any degenerate with the
      second; the single stretch for diatomics), each displaced to both classical turning
      points of v = 1 and v = 2,

      .. math:: Q = \pm\sqrt{(2v+1)/\omega}, \qquad
                q = \pm\sqrt{(2v+1)/(\mu\omega)}

      in mass-weighted atomic units (Q) or bohr along the unit Cartesian mode of
      reduced mass :math:`\mu` (q). Ids ``mode<i>-{p1,m1,p2,m2}``.

    Selection: ``rng = numpy.random.default_rng(seed)``; the first ``n_samples - 1``
    entries of ``rng.permutation(n_candidates)`` are taken and returned in candidate
    order, so a larger ``n_samples`` gives a superset. If ``n_samples - 1`` exceeds the
    number of candidates, all are used and the remainder are random displacements
    drawn, with the same generator, from the harmonic ground state of every real mode,
    :math:`Q_k \sim \mathcal N(0, 1/(2\omega_k))` (ids ``random-s<seed>-<n>``).

    Args:
        spec : MoleculeSpec
            Molecule at (or near) equilibrium; positions in Å.
        n_samples : int
            Number of geometries returned, >= 1 (the first is always ``eq``).
        seed : int
            Seed of the selection and of the random displacements.
        kinds : sequence of str
            Subset of :data:`KINDS`.
        hessian_xc, hessian_basis : str, optional
            Level of the Hessian for normal modes (default: the spec's; ``"hf"`` and
            ``"sto-3g"`` make it cheap). Computed only when needed (``normal_mode`` in
            ``kinds``, or random samples requested); nothing is cached. At the default
            PBE0/6-31G level this dominates the cost (about 3 min for benzene on one core).

    Returns:
        list of :class:`GeometrySample`, length ``n_samples``; positions (natm, 3) in Å.
        Ids are unique and identical for the same (spec, seed, n_samples, kinds).
    """
    n_samples, seed, kinds = _check_sampling_args(n_samples, seed, kinds)
    eq = GeometrySample(
        "eq", "equilibrium", f"equilibrium geometry ({spec.source})",
        np.array(spec.positions_angstrom, dtype=float),
    )
    if n_samples == 1:
        return [eq]

    def hessian_modes():
        return normal_modes(spec, xc=hessian_xc, basis=hessian_basis)

    modes = hessian_modes() if "normal_mode" in kinds else None
    candidates: list[GeometrySample] = []
    if "stretch" in kinds:
        candidates += _stretch_candidates(spec)
    if "bend" in kinds:
        candidates += _bend_candidates(spec)
    if modes is not None:
        candidates += _mode_candidates(spec, modes)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(candidates))
    picked = sorted(int(n) for n in order[: n_samples - 1])
    samples = [eq] + [candidates[n] for n in picked]
    n_random = n_samples - len(samples)
    if n_random:
        modes = hessian_modes() if modes is None else modes
        samples += _random_samples(spec, modes, n_random, rng, seed)
    return samples
