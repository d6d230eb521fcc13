"""The hybrid engine: the model propagates, the RT engine re-anchors where the model's
measured Fock error or its ensemble's spread says so (:func:`rtml.model.propagate_hybrid`)."""

import logging

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from rtml import InputError
from rtml.chem import load_molecule
from rtml.fields import parse_field
from rtml.model import (EnsembleStepper, HybridSettings, ModelConfig, RTMLModel, RTMLPropagator,
                        engine_system, propagate_hybrid)
from rtml.tddft import PropagationSettings, SimulationInputs, prepare_ground_state, propagate

N_STEPS = 40


@pytest.fixture(scope="module")
def lih():
    """LiH (grid 1), an x kick: the ground state and the engine's reference run."""
    settings = PropagationSettings(dt=0.2, n_steps=N_STEPS)
    inputs = SimulationInputs(molecule=load_molecule("lih"), fields=[parse_field("kick:5e-3:x")],
                              settings=settings, grid_level=1)
    gs, fields = prepare_ground_state(inputs)
    frames, _ = propagate(gs, fields, settings)
    return gs, fields, settings, frames


def _model(seed: int, output_scale: float, learned: str | None = None) -> RTMLModel:
    """An untrained rtml model; with a small output scale its learned XC change is ~0 (J and
    K of ΔP stay exact; for the default, LR-TDDFT), with a large one and random weights its
    ΔG is garbage."""
    torch.manual_seed(seed)
    model = RTMLModel(ModelConfig() if learned is None else ModelConfig(learned=learned)).double()
    with torch.no_grad():
        model.dynamics.head.weight.normal_(0.0, 0.1)
        model.input_scale.fill_(1e-3)
        model.output_scale.fill_(output_scale)
        if output_scale > 1:
            for p in model.decoder.parameters():
                p.normal_(0.0, 1.0)
    return model


def _error(frames, ref) -> np.ndarray:
    """e(t) = ‖P̂(t) − P(t)‖_F / max_t ‖P(t) − P(0)‖_F."""
    p, q = ref["density"][:, 0], frames["density"][:, 0]
    scale = np.linalg.norm((p - p[:1]).reshape(len(p), -1), axis=1).max()
    return np.linalg.norm((q - p).reshape(len(p), -1), axis=1) / scale


def test_a_broken_model_gives_the_engines_answer_and_says_so(lih, caplog):
    gs, fields, settings, ref = lih
    broken = RTMLPropagator(_model(0, 50.0))
    with caplog.at_level(logging.INFO, logger="rtml.model"):
        frames, stats, extras = propagate_hybrid(gs, fields, settings, broken,
                                                 HybridSettings(calibration_steps=4))
    assert stats["model_steps"] == 0 and stats["engine_steps"] == N_STEPS
    assert np.abs(frames["density"] - ref["density"]).max() < 1e-9
    source = extras[0][0]["frame_source"]
    assert source.shape == (N_STEPS + 1,) and not source.any()
    anchors = extras[0][1]["hybrid_anchors"]
    assert anchors[0]["reason"] == "start"
    assert {a["reason"] for a in anchors[1:]} == {"model error above budget"}
    # checked again after twice as many engine steps each time: 4, 8, 16, then the rest
    assert [a["engine_steps"] for a in anchors] == [4, 8, 16, 12]
    assert "the engine goes on" in caplog.text
    # the first anchor timed both steps, said which is faster and kept the times
    times = extras[0][1]["hybrid_step_seconds"]
    assert times["engine"] > 0 and times["model"] > 0
    assert "a model step takes" in caplog.text


def test_segments_follow_the_settings_and_keep_the_physics(lih):
    gs, fields, settings, ref = lih
    model = RTMLPropagator(_model(0, 1e-4))
    hybrid = HybridSettings(error_tol=100.0, spread_tol=100.0, max_model_steps=10, anchor_steps=2,
                            calibration_steps=2)
    frames, stats, extras = propagate_hybrid(gs, fields, settings, model, hybrid)
    # anchors of 2 engine steps at steps 0, 10, 22, 34; model segments of 8 (the first is
    # at most 4 anchors long, each next one at most twice the last), then 10 (the cap)
    # (frame k is the state after step k; frame 0, the kicked ground state, is the engine's)
    want = np.ones(N_STEPS + 1, dtype=int)
    want[0] = 0
    for start in (0, 10, 22, 34):
        want[start + 1:start + 3] = 0
    assert np.array_equal(extras[0][0]["frame_source"], want)
    assert (stats["model_steps"], stats["engine_steps"], stats["anchors"]) == (32, 8, 4)
    rho = torch.as_tensor(frames["density"][:, 0])
    s = torch.as_tensor(gs.context.overlap)
    trace = torch.einsum("tsij,ji->ts", rho, s.to(rho.dtype)).real
    assert (trace - 4.0).abs().max() < 1e-10
    assert (rho - rho.transpose(-1, -2).conj()).abs().max() < 1e-12
    # the model without its XC change is close, not exact: the frames differ from the engine's
    assert 1e-6 < _error(frames, ref).max() < 0.5
    # engine frames carry exact energies, model frames the second-order estimate
    assert np.abs(frames["energy"][:3, 0] - ref["energy"][:3, 0]).max() < 1e-10


def test_the_error_estimate_follows_the_error_and_ends_the_model_segments(lih):
    """The recorded estimate (the measured per-step Fock errors, trapezoid over each segment)
    is what the model's steps really cost, a little above it (measured 1.2x here), and once
    error_tol is spent the engine finishes the trajectory. (An ``xc`` model with its XC
    change ~0 errs enough to spend the budget; the default is LR-TDDFT when untrained.)"""
    gs, fields, settings, ref = lih
    model = RTMLPropagator(_model(0, 1e-4, learned="xc"))
    for tol in (0.01, 0.05):
        hybrid = HybridSettings(error_tol=tol, spread_tol=100.0, calibration_steps=8)
        frames, stats, extras = propagate_hybrid(gs, fields, settings, model, hybrid)
        attrs = extras[0][1]
        anchors = attrs["hybrid_anchors"]
        assert 0 < stats["model_steps"] < N_STEPS - 8
        assert anchors[-1]["reason"] == "error budget spent"
        assert anchors[-1]["step"] + anchors[-1]["engine_steps"] == N_STEPS
        error = _error(frames, ref).max()
        assert error <= attrs["hybrid_error_estimate"] <= 2 * error


def test_ensemble_spread_hands_back_to_the_engine(lih):
    gs, fields, settings, _ = lih
    pair = RTMLPropagator([_model(1, 1e-2), _model(2, 1e-2)])
    hybrid = HybridSettings(error_tol=100.0, spread_tol=1e-6, calibration_steps=4)
    _, stats, extras = propagate_hybrid(gs, fields, settings, pair, hybrid)
    reasons = [a["reason"] for a in extras[0][1]["hybrid_anchors"]]
    assert any(r.startswith("ensemble spread") for r in reasons[1:])
    # one model has no spread: the same settings never hand back for it
    _, _, extras = propagate_hybrid(gs, fields, settings, RTMLPropagator(_model(1, 1e-2)), hybrid)
    reasons = [a["reason"] for a in extras[0][1]["hybrid_anchors"]]
    assert not any(r.startswith("ensemble spread") for r in reasons)


def test_ensemble_spread_is_zero_for_agreeing_members(lih):
    gs, _, _, _ = lih
    model = _model(1, 1e-2)
    system, maps = engine_system(gs, RTMLPropagator([model, model]))
    stepper = EnsembleStepper([model, model], system, maps)
    p = system.rho0.to(torch.complex128) + 1e-3 * torch.eye(system.layout.nbf)
    with torch.no_grad():
        stepper.step(p, torch.zeros(1, 3, dtype=torch.float64), 0.2)
        assert float(stepper.spread(p, 0.2)[0]) == 0.0


@pytest.mark.parametrize("kwargs,message", [
    ({"error_tol": 0.0}, "hybrid error-tol must be a positive number"),
    ({"spread_tol": float("nan")}, "hybrid spread-tol must be a positive number"),
    ({"anchor_steps": 0}, "hybrid anchor-steps must be a positive integer"),
    ({"max_model_steps": 2.5}, "hybrid max-model-steps must be a positive integer"),
])
def test_bad_hybrid_settings_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        HybridSettings(**kwargs)


class _Killed(Exception):
    """Stands for a kill: raised from the progress callback."""


def test_a_killed_hybrid_run_resumes_bit_for_bit(lih, tmp_path, caplog):
    """Two fields, checkpoints every 5 steps: killed in the second field, the rerun takes the
    first from its finished checkpoint and the second from its last state, and gives the
    uninterrupted run's frames, sources and anchors exactly. One thread, as the engine's own
    resume test: with more, libxc's threaded sums make even two uninterrupted runs differ at
    ~1e-14. A checkpoint of other settings is reported and started over."""
    with threadpool_limits(1):
        _killed_hybrid_run_resumes_bit_for_bit(lih, tmp_path, caplog)


def _killed_hybrid_run_resumes_bit_for_bit(lih, tmp_path, caplog):
    gs, fields, settings, _ = lih
    two = fields + [parse_field("kick:5e-3:z")]
    from rtml.tddft import resolve_fields
    two = resolve_fields(two, gs)
    ckpt = PropagationSettings(dt=settings.dt, n_steps=N_STEPS, checkpoint_every=5)
    pair = RTMLPropagator([_model(1, 1e-3), _model(2, 1e-3)])
    hybrid = HybridSettings(error_tol=0.2, spread_tol=100.0, max_model_steps=6, anchor_steps=2,
                            calibration_steps=4)
    want, want_stats, want_extras = propagate_hybrid(gs, two, ckpt, pair, hybrid)
    assert want_stats["model_steps"] > 0 and want_stats["engine_steps"] > 0

    def kill_at(n):
        def progress(done):
            if done >= n:
                raise _Killed
        return progress

    with pytest.raises(_Killed):
        propagate_hybrid(gs, two, ckpt, pair, hybrid, progress=kill_at(N_STEPS + 27),
                         checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("hybrid-*.pt")) == ["hybrid-000.pt",
                                                                   "hybrid-001.pt"]
    with caplog.at_level(logging.INFO, logger="rtml.model"):
        got, stats, extras = propagate_hybrid(gs, two, ckpt, pair, hybrid, checkpoint_dir=tmp_path)
    assert "resumed at step" in caplog.text
    for name in ("density", "energy", "dipole"):
        assert np.array_equal(got[name], want[name]), name
    for (d_got, a_got), (d_want, a_want) in zip(extras, want_extras):
        assert np.array_equal(d_got["frame_source"], d_want["frame_source"])
        assert a_got["hybrid_anchors"] == a_want["hybrid_anchors"]
        assert a_got["hybrid_error_estimate"] == a_want["hybrid_error_estimate"]
    assert (stats["model_steps"], stats["engine_steps"]) == (want_stats["model_steps"],
                                                             want_stats["engine_steps"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rtml.model"):
        other = HybridSettings(error_tol=0.1, spread_tol=100.0, max_model_steps=6,
                               anchor_steps=2, calibration_steps=4)
        propagate_hybrid(gs, two[:1], ckpt, pair, other, checkpoint_dir=tmp_path)
    assert "of other inputs" in caplog.text
