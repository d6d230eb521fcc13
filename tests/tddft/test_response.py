"""The linear-response corrector: L[dP] against finite differences of the Fock build, and
propagations with one Fock build per step against the full corrector (marked ``physics``)."""

import numpy as np
import pytest
from pyscf import dft, gto, scf

from rtml import InputError
from rtml.chem import load_molecule
from rtml.fields import parse_field
from rtml.tddft import (Checkpoint, PropagationSettings, SimulationInputs, build_fock_context,
                        build_fock_response, fock_and_energy, fock_response, prepare_ground_state,
                        propagate, response_size_mb)

pytestmark = pytest.mark.physics

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"


def _context_and_density(xc, charge, spin):
    mol = gto.M(atom=WATER, basis="6-31g", charge=charge, spin=spin, verbose=0)
    open_shell = spin != 0
    if xc == "hf":
        mf = scf.UHF(mol) if open_shell else scf.RHF(mol)
    else:
        mf = dft.UKS(mol, xc=xc) if open_shell else dft.RKS(mol, xc=xc)
        mf.grids.level = 1
    mf.conv_tol = 1e-9
    mf.kernel()
    nspin = 2 if open_shell else 1
    dm = np.asarray(mf.make_rdm1()).reshape(nspin, mol.nao, mol.nao)
    return build_fock_context(mol, xc, nspin, getattr(mf, "grids", None)), dm


def _random_hermitian(rng, shape, scale):
    a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return scale * (a + a.conj().swapaxes(-1, -2))


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe0", "tpss", "camb3lyp", "hf"])
@pytest.mark.parametrize("charge,spin", [(0, 0), (1, 1)], ids=["rks", "uks"])
def test_response_is_the_derivative_of_the_fock_build(xc, charge, spin):
    """L[dP] = (F[P0 + dP] - F[P0 - dP]) / 2 up to O(dP^3), for a complex Hermitian dP (the
    imaginary part reaches exact exchange only): the difference is tiny and shrinks ~1000x
    when dP shrinks 10x (measured 20-1000x, the lower ratios near rounding; open shells have the
    larger third derivatives)."""
    ctx, dm = _context_and_density(xc, charge, spin)
    response = build_fock_response(ctx, dm)
    direction = _random_hermitian(np.random.default_rng(1), (1,) + dm.shape, 1.0)
    errors = []
    for scale in (1e-4, 1e-5):
        step = scale * direction
        plus, _ = fock_and_energy(ctx, dm[None] + step)
        minus, _ = fock_and_energy(ctx, dm[None] - step)
        central = 0.5 * (plus - minus)
        linear = response.apply(step)
        errors.append(np.abs(linear - central).max() / np.abs(central).max())
    assert errors[1] < 1e-5
    if xc == "hf":  # F is linear in P: both differences are rounding (~1e-15 / |dP|)
        assert errors[0] < 1e-10 and errors[1] < 1e-9
    else:  # O(dP^3) truncation, unless both are already near rounding
        assert errors[0] / errors[1] > 30.0 or errors[0] < 1e-7
    if ctx.has_exact_exchange:  # K of the antisymmetric Im dP is not zero
        assert np.abs(linear.imag).max() > 1e-6


def test_response_size_is_bounded_by_the_memory_budget():
    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    mf = dft.RKS(mol, xc="pbe0")
    mf.grids.level = 1
    mf.grids.build()
    ctx = build_fock_context(mol, "pbe0", 1, mf.grids, max_memory_mb=4 * response_size_mb(13, 1) * 0.9)
    assert build_fock_response(ctx, np.eye(13)[None]) is None  # 0.25 of the budget is too little
    assert response_size_mb(66, 1) < 100  # benzene/6-31G fits a 2 GB budget


@pytest.fixture(scope="module")
def water_state():
    inputs = SimulationInputs(molecule=load_molecule("h2o"), fields=[parse_field("kick:1e-4:z")],
                              settings=PropagationSettings(dt=0.5, n_steps=1), grid_level=1)
    gs, _ = prepare_ground_state(inputs)
    return gs


def _run(gs, fields, **settings):
    frames, stats = propagate(gs, [parse_field(f) for f in fields], PropagationSettings(**settings))
    return frames, stats


def test_one_build_per_step_matches_the_full_corrector(water_state):
    """H2O PBE0, Magnus-4 at dt 0.5: a weak kick takes one build per step with the linear
    corrector (against ~3 with the full one) and lands on the full corrector's trajectory;
    a strong Gaussian pulse (E0 0.05 au) moves the density far from the kernel's reference,
    needs more full builds, and agrees as well."""
    common = dict(dt=0.5, n_steps=80, propagator="magnus4", pc_tol=1e-9)
    for field, most_builds in (("kick:1e-4:z", 1.1), ("gaussian:0.05:0.3:4:2:x", 2.5)):
        fast, fast_stats = _run(water_state, [field], linear_corrector=True, **common)
        full, full_stats = _run(water_state, [field], linear_corrector=False, **common)
        assert fast_stats["builds_per_step"] < most_builds
        assert full_stats["builds_per_step"] > 2.5
        assert np.abs(fast["density"] - full["density"]).max() < 1e-7
        assert np.abs(fast["dipole"] - full["dipole"]).max() < 1e-7
        # the stored energy is that of the stored density (second-order update from the build)
        assert np.abs(fast["energy"] - full["energy"]).max() < 1e-9
    assert np.abs(full["dipole"][:, 0, 0] - full["dipole"][0, 0, 0]).max() > 1e-2


def test_stale_model_falls_back_to_full_builds(water_state):
    """A model that is wrong (XC kernel of a much larger density) is measured as wrong: the
    engine goes back to full builds and the trajectory still meets pc_tol."""
    common = dict(dt=0.5, n_steps=40, propagator="magnus4", pc_tol=1e-9)
    reference, _ = _run(water_state, ["kick:1e-3:z"], linear_corrector=False, **common)
    ctx = water_state.context
    water_state._fock_response = build_fock_response(ctx, 3.0 * water_state.density)
    try:
        frames, stats = _run(water_state, ["kick:1e-3:z"], linear_corrector=True, **common)
    finally:
        del water_state._fock_response
    assert stats["builds_per_step"] > 1.5
    assert np.abs(frames["dipole"] - reference["dipole"]).max() < 1e-7
    assert fock_response(water_state) is not None  # rebuilt from the ground state


def test_resume_keeps_the_linear_model(water_state, tmp_path):
    """The checkpoint carries the model's expansion point and measured error: a resumed run
    takes the same builds as an uninterrupted one and the same trajectory (to rounding:
    threaded libxc sums in varying order; a resume that forgot the model needs an extra
    build and lands ~3e-11 away)."""
    fields = [parse_field("kick:1e-3:y")]
    settings = PropagationSettings(dt=0.5, n_steps=30, propagator="magnus4", checkpoint_every=10)
    whole, whole_stats = propagate(water_state, fields, settings)
    first = PropagationSettings(dt=0.5, n_steps=20, propagator="magnus4", checkpoint_every=10)
    propagate(water_state, fields, first, checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    resumed, resumed_stats = propagate(water_state, fields, settings,
                                       checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    assert resumed_stats["n_builds"] == whole_stats["n_builds"]
    assert np.abs(resumed["density"] - whole["density"]).max() < 1e-12
    assert np.abs(resumed["energy"] - whole["energy"]).max() < 1e-12


def test_carried_model_builds_rarely_and_stays_on_the_full_correctors_trajectory(water_state):
    """With ``carry_model`` a step is tried on the linear model around the last build first:
    a weak kick then needs a build only every several steps, and a strong Gaussian pulse,
    where the model's error grows fast with the distance from its build, falls back to
    about one build per step; both land on the full corrector's trajectory as the one-build
    path does."""
    common = dict(dt=0.5, n_steps=80, propagator="magnus4", pc_tol=1e-9)
    for field, most_builds in (("kick:1e-4:z", 0.2), ("gaussian:0.05:0.3:4:2:x", 2.5)):
        carried, stats = _run(water_state, [field], carry_model=True, **common)
        full, _ = _run(water_state, [field], linear_corrector=False, **common)
        assert stats["builds_per_step"] < most_builds
        assert np.abs(carried["density"] - full["density"]).max() < 1e-7
        assert np.abs(carried["dipole"] - full["dipole"]).max() < 1e-7
        assert np.abs(carried["energy"] - full["energy"]).max() < 1e-9
        if field.startswith("gaussian"):
            assert stats["builds_per_step"] > 0.5  # the error control did fall back


def test_carried_model_needs_the_linear_corrector():
    with pytest.raises(InputError, match="needs the linear corrector"):
        PropagationSettings(dt=0.2, n_steps=1, linear_corrector=False, carry_model=True)


def test_resume_keeps_the_carried_model(water_state, tmp_path):
    """The checkpoint also carries the build's energy and the change the error was measured
    on: a resumed carried run takes the same builds (fewer than its steps) and the same
    trajectory."""
    fields = [parse_field("kick:1e-4:y")]
    common = dict(dt=0.5, propagator="magnus4", checkpoint_every=10, carry_model=True)
    whole, whole_stats = propagate(water_state, fields, PropagationSettings(n_steps=30, **common))
    propagate(water_state, fields, PropagationSettings(n_steps=20, **common),
              checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    resumed, resumed_stats = propagate(water_state, fields,
                                       PropagationSettings(n_steps=30, **common),
                                       checkpoint=Checkpoint(tmp_path / "ckpt", "h"))
    assert resumed_stats["n_builds"] == whole_stats["n_builds"] < 30
    assert np.abs(resumed["density"] - whole["density"]).max() < 1e-12
    assert np.abs(resumed["energy"] - whole["energy"]).max() < 1e-12


def _kernel_reference(ctx, dm):
    """Σ_g w_g B_g^T f_xc(g) B_g in double precision over every AO pair and point (no
    screening, no eigen-split): the definition the fast kernel must reproduce."""
    from rtml.tddft import block_ao_values, density_on_grid, libxc_rows

    nao = ctx.nao
    iu, ju = np.triu_indices(nao)
    kernel = np.zeros((len(iu), len(iu)))
    for block in ctx.grid_blocks:
        idx = block.ao_index
        ao, value = block_ao_values(ctx, block)
        rho = density_on_grid(ao, value, dm[:, idx[:, None], idx], ctx.xctype)
        fxc = ctx.numint.eval_xc_eff(ctx.xc, libxc_rows(rho, 1, ctx.xctype), deriv=2,
                                     xctype=ctx.xctype, spin=0)[2] * block.weights
        full = np.zeros((4, nao, len(block.weights)))
        full[:, idx] = ao.transpose(1, 2, 0)
        b = np.stack([full[0][iu] * full[0][ju]]
                     + [full[x][iu] * full[0][ju] + full[0][iu] * full[x][ju] for x in range(1, 4)])
        kernel += np.einsum("apg,acg,cqg->pq", b, fxc, b, optimize=True)
    return kernel


def test_xc_kernel_matches_its_definition_and_the_coarser_grid_stays_close():
    """The single-precision, eigen-split, screened kernel is the double-precision sum to
    1e-5; the engine's kernel grid (two levels coarser, not below 1) is within 2e-3 of the
    SCF grid's, and SCF grids of level 1 keep their own grid."""
    from types import SimpleNamespace

    from rtml.tddft import (KERNEL_GRID_COARSENING, KERNEL_GRID_MIN_LEVEL, kernel_coarsening,
                            kernel_context, xc_kernel)

    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    mf = dft.RKS(mol, xc="pbe0")
    mf.grids.level = 3
    mf.kernel()
    ctx = build_fock_context(mol, "pbe0", 1, mf.grids)
    dm = np.asarray(mf.make_rdm1())[None]
    exact = _kernel_reference(ctx, dm)
    fast = xc_kernel(ctx, dm)
    assert np.linalg.norm(fast - exact) / np.linalg.norm(exact) < 1e-5
    coarse = kernel_context(ctx, 3)
    assert sum(len(b.weights) for b in coarse.grid_blocks) < 0.5 * sum(
        len(b.weights) for b in ctx.grid_blocks)
    assert np.linalg.norm(xc_kernel(coarse, dm) - exact) / np.linalg.norm(exact) < 2e-3
    assert kernel_context(ctx, KERNEL_GRID_MIN_LEVEL) is ctx
    # the engine coarsens only where the SCF grid's kernel would be slow: H2O keeps its grid,
    # a C6H6-sized context (66 AOs, 141k points) is coarsened
    assert kernel_coarsening(ctx) == 0
    big = SimpleNamespace(nao=66, nspin=1, grid_blocks=[SimpleNamespace(weights=np.empty(141262))])
    assert kernel_coarsening(big) == KERNEL_GRID_COARSENING
