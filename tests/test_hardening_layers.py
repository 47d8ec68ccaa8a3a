"""Issue 13, layers: bad arguments and inputs fail loudly, naming the layer."""

import math

import keras
import numpy as np
import pytest

import keras_snn
from keras_snn import layers
from keras_snn import surrogates

# --------------------------------------------------------------------------
# Numeric constructor arguments: finite, in range, representable in dtype


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (
            lambda: layers.LIF(threshold=math.inf, name="lif_in"),
            r"Argument `threshold` of LIF 'lif_in' must be a finite number "
            r"> 0\. Received: threshold=inf",
        ),
        (
            lambda: layers.LIF(threshold=1e300),
            r"`threshold` of LIF must be .*float32.*becomes inf.*"
            r"threshold=1e\+300",
        ),
        (
            lambda: layers.LIF(threshold=1e-60),
            r"`threshold` of LIF .*float32 it becomes 0\.0",
        ),
        (
            lambda: layers.LIF(threshold=1e5, dtype="mixed_float16"),
            r"`threshold` of LIF .*float16.*threshold=100000\.0",
        ),
        (lambda: layers.LIF(threshold=math.nan), "threshold=nan"),
        (lambda: layers.LIF(decay=math.nan), "`decay` of LIF.*decay=nan"),
        (lambda: layers.IF(threshold=-math.inf), "`threshold` of IF"),
        (lambda: layers.LIFCell(threshold=math.inf), "`threshold` of LIFCell"),
        (lambda: layers.IFCell(threshold=1e39), "`threshold` of IFCell"),
        (
            lambda: layers.TDBatchNormalization(alpha=math.inf),
            "`alpha` of TDBatchNormalization",
        ),
        (
            lambda: layers.TDBatchNormalization(threshold=1e40),
            "`threshold` of TDBatchNormalization.*float32",
        ),
        (
            lambda: layers.TDBatchNormalization(epsilon=math.nan),
            "`epsilon` of TDBatchNormalization.*epsilon=nan",
        ),
        (
            lambda: layers.TDBatchNormalization(momentum=math.nan),
            "`momentum` of TDBatchNormalization",
        ),
        (lambda: layers.NeuNorm(scale=math.inf), "`scale` of NeuNorm"),
        (
            lambda: layers.PoissonEncoding(4, max_rate=math.inf, name="enc"),
            "`max_rate` of PoissonEncoding 'enc'.*max_rate=inf",
        ),
        (
            lambda: layers.MembraneReadout(3, decay=math.nan),
            "`decay` of MembraneReadout.*decay=nan",
        ),
        (lambda: surrogates.FastSigmoid(gamma=math.inf), "gamma=inf"),
        (lambda: surrogates.Rectangular(width=math.nan), "width=nan"),
    ],
)
def test_non_finite_or_unrepresentable_arguments_are_refused(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


def test_representable_arguments_are_kept():
    lif = layers.LIF(threshold=3e38, decay=0.0)
    assert lif.threshold == 3e38 and lif.decay == 0.0
    half = layers.LIF(threshold=6e4, dtype="mixed_float16")
    assert half.threshold == 6e4
    assert layers.TDBatchNormalization(momentum=0.0).momentum == 0.0


# --------------------------------------------------------------------------
# NaN / inf inputs (issue 13, silent wrong results, item 1)


def _nan_model(encoder):
    inputs = keras.Input((6, 6, 1))
    x = encoder(inputs)
    x = layers.TimeFolded(keras.layers.Conv2D(4, 3))(x)
    x = layers.LIF(name="lif_a")(x)
    x = layers.TimeFolded(keras.layers.Flatten())(x)
    return keras.Model(inputs, layers.Decoding(3)(x))


def _digits_like(n=16):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, 6, 6, 1)).astype("float32")
    return x, rng.integers(0, 3, n)


ENCODERS = {
    "direct": lambda: layers.DirectEncoding(3, name="enc"),
    "bernoulli": lambda: layers.BernoulliEncoding(3, seed=1, name="enc"),
    "poisson": lambda: layers.PoissonEncoding(3, seed=1, name="enc"),
}


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_fit_with_one_non_finite_pixel_raises_naming_the_encoder(
    encoder, bad_value
):
    x, y = _digits_like()
    model = _nan_model(ENCODERS[encoder]())
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # finite: fine
    x[5, 2, 2, 0] = bad_value
    with pytest.raises(Exception, match=r"Layer 'enc' .*non-finite input"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with pytest.raises(Exception, match=r"Layer 'enc' .*non-finite input"):
        model.predict(x, batch_size=8, verbose=0)


def test_non_finite_currents_from_weights_raise_naming_the_neurons():
    model = _nan_model(layers.DirectEncoding(3))
    conv = model.layers[2].layer
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    kernel[0, 0, 0, 0] = np.nan
    conv.kernel.assign(kernel)
    x, _ = _digits_like(4)
    with pytest.raises(Exception, match=r"Layer 'lif_a' \(LIF\).*currents"):
        model.predict(x, verbose=0)


@pytest.mark.parametrize("encoder", ["direct", "bernoulli"])
def test_under_xla_non_finite_pixel_gives_nan_not_plausible_outputs(encoder):
    # XLA drops runtime checks, so the fault must show as NaN instead.
    x, y = _digits_like()
    model = _nan_model(ENCODERS[encoder]())
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    finite = model.predict(x, batch_size=8, verbose=0)
    assert np.isfinite(finite).all()
    x[5, 2, 2, 0] = np.nan
    outputs = model.predict(x, batch_size=8, verbose=0)
    assert np.isnan(outputs[5]).all()
    assert np.isfinite(np.delete(outputs, 5, axis=0)).all()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isnan(history.history["loss"][0])


def test_check_finite_false_skips_the_check_and_round_trips():
    lif = layers.LIF(check_finite=False)
    assert layers.LIF.from_config(lif.get_config()).check_finite is False
    enc = layers.PoissonEncoding(2, check_finite=False)
    assert not layers.PoissonEncoding.from_config(enc.get_config()).check_finite
    currents = np.full((1, 2, 3), np.nan, "float32")
    spikes = keras.ops.convert_to_numpy(lif(currents))
    np.testing.assert_array_equal(spikes, 0.0)  # the old, silent result


# --------------------------------------------------------------------------
# Stateful layers given a partial batch (item 6)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("cls", [layers.LIF, layers.IF])
def test_stateful_partial_last_batch_is_refused(cls, fused, jit_compile):
    inputs = keras.Input((3, 4), batch_size=4)
    model = keras.Model(
        inputs, cls(stateful=True, fused=fused, name="s")(inputs)
    )
    model.compile(jit_compile=jit_compile)
    x = np.ones((9, 3, 4), "float32")
    # 9 = 4 + 4 + 1: the last batch would broadcast against the state.
    pattern = (
        r"Layer \W*s\W* \((LIF|IF)\) is stateful and was built for batches of 4"
        r".*drop the last partial batch"
        if not jit_compile
        else r"s_\d+/EnsureShape|\[1,3,4\] is not compatible"
    )
    with pytest.raises(Exception, match=pattern):
        model.predict(x, batch_size=4, verbose=0)
    assert model.predict(x[:8], batch_size=4, verbose=0).shape == (8, 3, 4)


def test_stateful_wrong_static_batch_is_refused_with_advice():
    lif = layers.LIF(stateful=True, name="s")
    lif(np.ones((4, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"'s' \(LIF\).*batches of 4.*of 3"):
        lif(np.ones((3, 2, 3), "float32"))


# --------------------------------------------------------------------------
# Defaults that fail quietly (item 7)


def test_tdbn_moving_statistics_follow_the_data_after_a_short_run():
    # 30 training steps on currents of mean 5 and std 3: with Keras'
    # momentum 0.99 the moving mean would still be 5 * (1 - 0.99**30) = 1.3.
    tdbn = layers.TDBatchNormalization()
    rng = np.random.default_rng(0)
    for _ in range(30):
        batch = rng.normal(5.0, 3.0, size=(8, 2, 4)).astype("float32")
        tdbn(batch, training=True)
    mean = keras.ops.convert_to_numpy(tdbn.moving_mean)
    variance = keras.ops.convert_to_numpy(tdbn.moving_variance)
    np.testing.assert_allclose(mean, 5.0, rtol=0.15)
    np.testing.assert_allclose(variance, 9.0, rtol=0.3)


def test_quickstart_validation_accuracy_tracks_training_from_epoch_1():
    # With Keras' BN momentum 0.99 it stayed at 0.0417 (one class) because
    # the moving variance still held most of its initial 1.0.
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "examples/quickstart_digits.py"
    spec = importlib.util.spec_from_file_location("quickstart_digits", path)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    keras.utils.set_random_seed(0)
    x_train, _, y_train, _ = quickstart.load_digits()
    model = quickstart.build_model(timesteps=2)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=1,
        validation_split=0.1,
        verbose=0,
    ).history
    assert history["val_accuracy"][0] > 0.5
    assert history["val_accuracy"][0] > history["accuracy"][0] - 0.25


def _sequential(normalise):
    stack = [
        keras.Input((8, 8, 1)),
        layers.DirectEncoding(3),
        layers.TimeFolded(keras.layers.Conv2D(4, 3, padding="same")),
    ]
    if normalise:
        stack.append(layers.TDBatchNormalization())
    stack += [
        layers.LIF(name="quiet"),
        layers.TimeFolded(keras.layers.Flatten()),
        layers.Decoding(3),
    ]
    return keras.Sequential(stack)


def _faint_data():
    rng = np.random.default_rng(1)
    x = 0.05 * rng.uniform(size=(32, 8, 8, 1)).astype("float32")
    return x, rng.integers(0, 3, 32)


def _fit(model, x, y, jit_compile, callbacks=()):
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    model.fit(
        x, y, batch_size=16, epochs=1, verbose=0, callbacks=list(callbacks)
    )


def test_plain_fit_warns_when_a_layer_is_silent_on_the_first_batch():
    x, y = _faint_data()
    with pytest.warns(UserWarning, match=r"'quiet' \(LIF\) did not fire.*"):
        _fit(_sequential(normalise=False), x, y, jit_compile=False)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_normalised_network_does_not_warn(jit_compile, recwarn):
    x, y = _faint_data()
    model = _sequential(normalise=True)
    callback = keras_snn.analysis.SilentLayerWarning(x[:16])
    _fit(model, x, y, jit_compile, [callback])
    assert not [w for w in recwarn if "did not fire" in str(w.message)]


def test_xla_fit_warns_through_the_callback_and_keeps_the_statistics():
    x, y = _faint_data()
    model = _sequential(normalise=False)
    before = [v.numpy() for v in model.non_trainable_variables]
    assert keras_snn.analysis.silent_layers(model, x[:16]) == ["quiet"]
    for old, new in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    callback = keras_snn.analysis.SilentLayerWarning(x[:16])
    with pytest.warns(UserWarning, match=r"'quiet'.*threshold=1\b"):
        _fit(model, x, y, jit_compile=True, callbacks=[callback])
