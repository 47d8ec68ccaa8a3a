"""The pure step function against hand-computed trajectories (Eq. 5-6)."""

import numpy as np
import pytest

from keras_snn import functional


def run_numpy(currents, threshold, decay, reset):
    """Runs `neuron_step` on NumPy arrays over the first axis."""
    v = np.zeros_like(currents[0])
    spikes, potentials = [], []
    for current in currents:
        o, u, v = functional.neuron_step(current, v, threshold, decay, reset)
        spikes.append(o)
        potentials.append(u)
    return np.array(spikes), np.array(potentials)


# Constant input current, binary-exact numbers, worked out by hand from
# u[t] = k v[t-1] + I, o[t] = H(u[t] - theta), then the reset.
HAND_TRAJECTORIES = [
    # LIF, hard reset, k = 0.5, theta = 1, I = 0.75
    (
        "hard",
        0.5,
        1.0,
        0.75,
        [0.75, 1.125, 0.75, 1.125, 0.75],
        [0, 1, 0, 1, 0],
    ),
    # LIF, soft reset, k = 0.5, theta = 1, I = 0.75:
    # 0.75; 1.125 fire -> 0.125; 0.0625 + 0.75 = 0.8125; 1.15625 fire
    (
        "soft",
        0.5,
        1.0,
        0.75,
        [0.75, 1.125, 0.8125, 1.15625, 0.828125],
        [0, 1, 0, 1, 0],
    ),
    # LIF, no reset: u converges to I / (1 - k) = 1.5
    (
        "none",
        0.5,
        1.0,
        0.75,
        [0.75, 1.125, 1.3125, 1.40625, 1.453125],
        [0, 1, 1, 1, 1],
    ),
    # IF (k = 1), soft reset, theta = 1, I = 0.75: u == theta fires at t=3
    (
        "soft",
        1.0,
        1.0,
        0.75,
        [0.75, 1.5, 1.25, 1.0, 0.75],
        [0, 1, 1, 1, 0],
    ),
    # IF, hard reset, theta = 0.5, I = 0.25: fires on reaching theta exactly
    (
        "hard",
        1.0,
        0.5,
        0.25,
        [0.25, 0.5, 0.25, 0.5, 0.25],
        [0, 1, 0, 1, 0],
    ),
    # LIF, hard reset, k = 0.25, theta = 2, I = 1.5:
    # u approaches I / (1 - k) = 2 from below and never fires
    (
        "hard",
        0.25,
        2.0,
        1.5,
        [1.5, 1.875, 1.96875, 1.9921875, 1.998046875],
        [0, 0, 0, 0, 0],
    ),
]


@pytest.mark.parametrize(
    "reset,decay,threshold,current,expected_u,expected_o", HAND_TRAJECTORIES
)
def test_hand_computed_trajectories(
    reset, decay, threshold, current, expected_u, expected_o
):
    currents = np.full((5, 1), current, dtype="float64")
    spikes, potentials = run_numpy(currents, threshold, decay, reset)
    np.testing.assert_array_equal(potentials[:, 0], expected_u)
    np.testing.assert_array_equal(spikes[:, 0], expected_o)


def paper_eq5_hard(currents, threshold, decay):
    """Wu et al. 2019 Eq. 5-6 as printed: u[t] = k u[t-1] (1 - o[t-1]) + I."""
    u = np.zeros_like(currents[0])
    o = np.zeros_like(currents[0])
    us, os_ = [], []
    for current in currents:
        u = decay * u * (1 - o) + current
        o = (u - threshold >= 0).astype(u.dtype)
        us.append(u)
        os_.append(o)
    return np.array(os_), np.array(us)


def test_state_form_equals_paper_eq5():
    rng = np.random.default_rng(0)
    currents = rng.uniform(-0.5, 1.5, size=(12, 3, 4, 4, 2))
    spikes, potentials = run_numpy(currents, 0.8, 0.7, "hard")
    ref_spikes, ref_potentials = paper_eq5_hard(currents, 0.8, 0.7)
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_allclose(potentials, ref_potentials, rtol=1e-12)


def test_heaviside_fires_at_zero():
    x = np.array([-1e-7, 0.0, 1e-7], dtype="float32")
    np.testing.assert_array_equal(functional.heaviside(x), [0.0, 1.0, 1.0])


def test_integer_arrays_work():
    # Fixed-point references can reuse the same step on integers.
    current = np.array([3, 5], dtype="int32")
    v = np.array([4, 0], dtype="int32")
    o, u, v = functional.neuron_step(current, v, 6, 1, "soft")
    np.testing.assert_array_equal(u, [7, 5])
    np.testing.assert_array_equal(o, [1, 0])
    np.testing.assert_array_equal(v, [1, 5])


@pytest.mark.parametrize(
    "func,value,pattern",
    [
        (functional.validate_threshold, 0.0, "threshold=0.0"),
        (functional.validate_threshold, -1, "threshold=-1"),
        (functional.validate_threshold, "a", "threshold='a'"),
        (functional.validate_decay, 1.5, r"\[0, 1\]. Received: decay=1.5"),
        (functional.validate_decay, -0.1, "decay=-0.1"),
        (functional.validate_reset, "zero", "reset='zero'"),
        (
            functional.validate_threshold,
            float("inf"),
            "finite number > 0. Received: threshold=inf",
        ),
        (functional.validate_decay, float("nan"), "decay=nan"),
        (
            lambda v: functional.validate_positive(v, "rate"),
            float("-inf"),
            "rate=-inf",
        ),
    ],
)
def test_validation_errors(func, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        func(value)


def test_unknown_reset_in_step():
    with pytest.raises(ValueError, match="reset='bogus'"):
        functional.neuron_step(1.0, 0.0, 1.0, 0.5, "bogus")


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "2", None])
def test_validate_count_rejects(value):
    with pytest.raises(ValueError, match=r"integer >= 1. Received: n="):
        functional.validate_count(value, "n")


def test_validate_count_accepts_numpy_integers():
    assert functional.validate_count(np.int64(3), "n") == 3
