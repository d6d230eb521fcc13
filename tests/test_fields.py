"""Field protocols: formulas, spec strings, JSON, LR-TDDFT frequency resolution."""

import json

import numpy as np
import pytest

from rtml import InputError
from rtml.fields import field_from_json, parse_field, resolve_field


@pytest.mark.parametrize("spec", [
    "kick:0.0001:z",
    "kick:0.005:x",
    "gaussian:0.01:0.2:30.0:10.0:y",
    "resonant:0.002:0.35:100.0:z",
    "resonant:0.002:S3:100.0:x",
    "none",
])
def test_spec_round_trip(spec):
    field = parse_field(spec)
    assert field.to_spec() == spec
    assert parse_field(field.to_spec()) == field
    assert field_from_json(field.to_json()) == field
    assert json.loads(field.to_json())["spec"] == spec


def test_polarisation_vector_is_normalised():
    field = parse_field("kick:1e-3:1,1,0")
    np.testing.assert_allclose(field.polarization, [2 ** -0.5, 2 ** -0.5, 0.0])
    np.testing.assert_allclose(field.kick_vector, 1e-3 * np.array([2 ** -0.5, 2 ** -0.5, 0.0]))
    assert parse_field(field.to_spec()) == field


def test_gaussian_pulse_formula():
    field = parse_field("gaussian:0.02:0.3:15:4:x")
    t = np.linspace(0, 40, 101)
    expected = 0.02 * np.exp(-(t - 15) ** 2 / (2 * 4 ** 2)) * np.cos(0.3 * t)
    np.testing.assert_allclose(field.envelope(t), expected, rtol=0, atol=1e-15)
    values = field.values(t)
    assert values.shape == (101, 3)
    np.testing.assert_allclose(values[:, 0], expected, atol=1e-15)
    assert np.all(values[:, 1:] == 0)


def test_resonant_drive_is_sine_on_its_window_and_zero_after():
    field = parse_field("resonant:0.01:0.25:50:z")
    t = np.array([0.0, 10.0, 50.0, 50.2, 80.0])
    np.testing.assert_allclose(field.envelope(t), [0.0, 0.01 * np.sin(2.5), 0.01 * np.sin(12.5), 0, 0])


def test_kick_has_no_field_values():
    field = parse_field("kick:1e-4:y")
    assert np.all(field.values(np.arange(5.0)) == 0)
    np.testing.assert_allclose(field.kick_vector, [0, 1e-4, 0])


def test_resonant_state_resolution():
    field = parse_field("resonant:0.01:S2:40:z")
    assert field.omega is None
    with pytest.raises(InputError, match="unresolved"):
        field.envelope(1.0)
    resolved = resolve_field(field, [0.1, 0.2, 0.3])
    assert resolved.omega == 0.2 and resolved.omega_source == "S2"
    assert resolved.to_spec() == "resonant:0.01:0.2:40.0:z"
    with pytest.raises(InputError, match="S2"):
        resolve_field(field, [0.1])


@pytest.mark.parametrize("spec,message", [
    ("", "empty"),
    ("laser:1:z", "unknown type"),
    ("kick:abc:z", "not a number"),
    ("kick:1e-3", "expected kick:E0:POL"),
    ("kick:1e-3:w", "polarisation"),
    ("kick:1e-3:0,0,0", "non-zero"),
    ("gaussian:0.1:0.2:10:0:z", "SIGMA must be > 0"),
    ("gaussian:0.1:0.2:10:z", "expected gaussian"),
    ("resonant:0.1:0.2:-5:z", "DURATION must be > 0"),
    ("resonant:0.1:S0:5:z", "numbered from S1"),
    ("kick:nan:z", "finite"),
])
def test_malformed_specs_name_the_problem(spec, message):
    with pytest.raises(InputError, match=message):
        parse_field(spec)


class _Excitations:
    energies = np.array([0.10, 0.20, 0.30, 0.40])
    oscillator_strengths = np.array([0.0, 0.3, 0.3, 0.9])
    transition_dipoles = np.array([[0, 0, 0], [0, -2.0, 0], [1.0, 0, 0], [0.0, -0.6, 0.8]])


def test_brightest_state_with_auto_polarisation():
    field = parse_field("resonant:0.01:B1:40:auto")
    assert field.polarization is None and not field.is_resolved
    assert field.to_spec() == "resonant:0.01:B1:40.0:auto"
    resolved = resolve_field(field, _Excitations())
    assert resolved.omega == 0.40
    np.testing.assert_allclose(resolved.polarization, [0.0, -0.6, 0.8])  # largest component positive
    # equally bright states are ranked by energy
    assert resolve_field(parse_field("resonant:0.01:B2:40:auto"), _Excitations()).omega == 0.20
    np.testing.assert_allclose(resolve_field(parse_field("resonant:0.01:B2:40:auto"),
                                             _Excitations()).polarization, [0, 1, 0])
    assert resolve_field(parse_field("resonant:0.01:S3:40:z"), _Excitations()).omega == 0.30


def test_auto_polarisation_needs_a_bright_lr_state():
    with pytest.raises(InputError, match="dark"):
        resolve_field(parse_field("resonant:0.01:S1:40:auto"), _Excitations())
    with pytest.raises(InputError, match="auto"):
        parse_field("kick:0.01:auto")
    with pytest.raises(InputError, match="auto"):
        parse_field("resonant:0.01:0.3:40:auto")
