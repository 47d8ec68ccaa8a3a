"""Each surrogate: Heaviside forward, analytic gradient on a grid."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import surrogates

GRID = np.linspace(-3.0, 3.0, 601).astype("float32")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# Formulas written out independently of keras_snn.surrogates.
ANALYTIC = [
    (
        surrogates.Rectangular(width=0.8),
        lambda x, th: (np.abs(x) < 0.4) / 0.8,
    ),
    (
        surrogates.FastSigmoid(gamma=5.0, beta=2.0),
        lambda x, th: 2.0 / (1.0 + 5.0 * np.abs(x)) ** 2,
    ),
    (
        surrogates.Triangle(width=1.5),
        lambda x, th: np.maximum(0.0, 1.0 - np.abs(x) / 1.5) / 1.5,
    ),
    (
        surrogates.Exponential(tau=0.5, scale=3.0),
        lambda x, th: 3.0 * np.exp(-np.abs(x) / 0.5),
    ),
    (
        surrogates.Sigmoid(alpha=4.0),
        lambda x, th: 4.0 * _sigmoid(4 * x) * (1 - _sigmoid(4 * x)),
    ),
    (
        surrogates.ATan(alpha=2.0),
        lambda x, th: 1.0 / (1.0 + (math.pi * x) ** 2),
    ),
    (surrogates.StraightThrough(), lambda x, th: np.ones_like(x)),
    (
        surrogates.LIFPseudoDerivative(alpha=0.25),
        lambda x, th: np.full_like(x, 1.0 / (th + 0.25)),
    ),
]


def tape_gradient(surrogate, x, threshold=1.0):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = surrogate(x, threshold)
    return y.numpy(), tape.gradient(y, x).numpy()


@pytest.mark.parametrize(
    "surrogate,formula", ANALYTIC, ids=lambda s: type(s).__name__
)
@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_forward_is_step_and_gradient_matches_formula(
    surrogate, formula, threshold
):
    spikes, grad = tape_gradient(surrogate, GRID, threshold)
    np.testing.assert_array_equal(spikes, (GRID >= 0).astype("float32"))
    np.testing.assert_allclose(
        grad, formula(GRID, threshold), rtol=1e-5, atol=1e-6
    )


def test_rectangular_is_eq14_of_wu_2019():
    # h(u) = (1/a) sign(|u - V_th| < a/2); area 1 for any width.
    fine = np.linspace(-3.0, 3.0, 60001).astype("float32")
    for width in (0.5, 1.0, 2.0):
        _, grad = tape_gradient(surrogates.Rectangular(width), fine)
        area = np.sum(grad) * (fine[1] - fine[0])
        assert abs(area - 1.0) < 5e-3


def test_gradient_flows_to_threshold_with_opposite_sign():
    surrogate = surrogates.Sigmoid(alpha=2.0)
    u = tf.constant([0.2, 0.9, 1.6])
    threshold = tf.Variable(1.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(u)
        y = tf.reduce_sum(surrogate(u - threshold, threshold))
    du = tape.gradient(y, u).numpy()
    dth = tape.gradient(y, threshold).numpy()
    np.testing.assert_allclose(dth, -du.sum(), rtol=1e-6)


def test_gradient_under_xla_and_float16():
    surrogate = surrogates.FastSigmoid(gamma=4.0)

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = surrogate(x)
        return tape.gradient(y, x)

    x = tf.constant([-0.5, 0.0, 0.5], dtype="float16")
    result = grad(x)
    assert result.dtype == tf.float16
    np.testing.assert_allclose(
        result.numpy().astype("float32"), [1 / 9, 1.0, 1 / 9], rtol=1e-3
    )


@pytest.mark.parametrize(
    "name,cls",
    [
        ("rectangular", surrogates.Rectangular),
        ("rect", surrogates.Rectangular),
        ("fast_sigmoid", surrogates.FastSigmoid),
        ("SuperSpike", surrogates.FastSigmoid),
        ("triangle", surrogates.Triangle),
        ("exponential", surrogates.Exponential),
        ("sigmoid", surrogates.Sigmoid),
        ("atan", surrogates.ATan),
        ("straight_through", surrogates.StraightThrough),
        ("lif_pseudo_derivative", surrogates.LIFPseudoDerivative),
    ],
)
def test_get_by_name(name, cls):
    assert isinstance(surrogates.get(name), cls)


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown surrogate 'gaussian'") as e:
        surrogates.get("gaussian")
    for name in surrogates.NAMES:
        assert name in str(e.value)


def test_get_wrong_type():
    with pytest.raises(TypeError, match="surrogate=3"):
        surrogates.get(3)


def test_get_none_is_default_rectangular():
    assert surrogates.get(None) == surrogates.Rectangular()


def test_serialize_round_trip():
    for surrogate, _ in ANALYTIC:
        config = surrogates.serialize(surrogate)
        assert surrogates.get(config) == surrogate


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (lambda: surrogates.Rectangular(width=0), "width=0"),
        (lambda: surrogates.FastSigmoid(gamma=-1), "gamma=-1"),
        (lambda: surrogates.Triangle(width="x"), "width='x'"),
        (lambda: surrogates.Exponential(tau=0), "tau=0"),
        (lambda: surrogates.Sigmoid(alpha=0), "alpha=0"),
        (lambda: surrogates.ATan(alpha=-2), "alpha=-2"),
        (lambda: surrogates.LIFPseudoDerivative(alpha=-1), "alpha=-1"),
    ],
)
def test_invalid_parameters(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


@keras.saving.register_keras_serializable(package="keras_snn_tests")
class Gaussian(surrogates.Surrogate):
    def __init__(self, sigma=0.5):
        self.sigma = sigma

    def grad(self, x, threshold=1.0):
        return keras.ops.exp(-0.5 * (x / self.sigma) ** 2)

    def get_config(self):
        return {"sigma": self.sigma}


def test_user_subclass_trains_and_serializes():
    surrogate = Gaussian(0.5)
    _, grad = tape_gradient(surrogate, GRID)
    np.testing.assert_allclose(
        grad, np.exp(-0.5 * (GRID / 0.5) ** 2), rtol=1e-5
    )
    restored = surrogates.get(surrogates.serialize(surrogate))
    assert isinstance(restored, Gaussian) and restored.sigma == 0.5


def test_base_class_requires_grad():
    with pytest.raises(NotImplementedError, match="must implement grad"):
        tape_gradient(surrogates.Surrogate(), GRID)
