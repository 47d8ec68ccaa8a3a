"""tdBN, BN folding and NeuNorm against NumPy forms of the paper equations."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_snn import functional
from keras_snn import layers

SHAPES = {"dense": (3, 4, 5), "conv": (2, 3, 4, 4, 3)}


def tdbn_reference(x, gamma, beta, alpha, threshold, epsilon, stats=None):
    """Zheng et al. 2021, Eq. 5-8: channel last, statistics over the rest.

    Returns the output and the (mean, biased variance) used; `stats`
    replaces the batch statistics (inference with moving statistics).
    """
    axes = tuple(range(x.ndim - 1))
    if stats is None:
        mean = x.mean(axis=axes)  # Eq. 7
        var = ((x - mean) ** 2).mean(axis=axes)  # Eq. 8
    else:
        mean, var = stats
    x_hat = alpha * threshold * (x - mean) / np.sqrt(var + epsilon)  # Eq. 5
    return gamma * x_hat + beta, (mean, var)  # Eq. 6


def random_affine(layer, rng):
    channels = layer.moving_mean.shape[0]
    if layer.gamma is not None:
        layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
    if layer.beta is not None:
        layer.beta.assign(rng.normal(0.0, 0.5, channels))


# --------------------------------------------------------------------------
# TDBatchNormalization


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_tdbn_training_output_matches_equations(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(1.5, 2.0, SHAPES[shape])
    layer = layers.TDBatchNormalization(
        alpha=0.7, threshold=1.3, epsilon=1e-3, dtype="float64"
    )
    layer.build(x.shape)
    random_affine(layer, rng)
    y = layer(x, training=True).numpy()
    ref, _ = tdbn_reference(
        x, layer.gamma.numpy(), layer.beta.numpy(), 0.7, 1.3, 1e-3
    )
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_tdbn_initial_output_has_std_alpha_threshold(shape):
    x = np.random.default_rng(1).normal(-3.0, 5.0, SHAPES[shape])
    y = layers.TDBatchNormalization(alpha=0.5, threshold=2.0, epsilon=1e-9)(
        x.astype("float32"), training=True
    ).numpy()
    flat = y.reshape(-1, y.shape[-1])
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 0.5 * 2.0, rtol=1e-4)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_tdbn_moving_statistics_after_one_and_two_steps(shape):
    rng = np.random.default_rng(2)
    batches = [rng.normal(m, s, SHAPES[shape]) for m, s in [(1, 2), (-2, 3)]]
    layer = layers.TDBatchNormalization(
        alpha=2.0, threshold=0.5, momentum=0.9, dtype="float64"
    )
    moving_mean = np.zeros(SHAPES[shape][-1])
    moving_var = np.ones(SHAPES[shape][-1])
    for x in batches:
        layer(x, training=True)
        axes = tuple(range(x.ndim - 1))
        moving_mean = 0.9 * moving_mean + 0.1 * x.mean(axes)
        moving_var = 0.9 * moving_var + 0.1 * x.var(axes)  # biased, as Keras
        np.testing.assert_allclose(layer.moving_mean.numpy(), moving_mean)
        np.testing.assert_allclose(layer.moving_variance.numpy(), moving_var)


def test_tdbn_moving_statistics_match_keras_batch_normalization():
    x = np.random.default_rng(3).normal(1.0, 2.0, (4, 5, 3)).astype("f4")
    tdbn = layers.TDBatchNormalization(momentum=0.8)
    bn = keras.layers.BatchNormalization(momentum=0.8)
    for _ in range(2):
        tdbn(x, training=True)
        layers.TimeFolded(bn)(x, training=True)
    np.testing.assert_allclose(tdbn.moving_mean, bn.moving_mean, rtol=1e-6)
    np.testing.assert_allclose(
        tdbn.moving_variance, bn.moving_variance, rtol=1e-6
    )


@pytest.mark.parametrize("training", [True, False])
def test_tdbn_with_unit_scale_equals_time_folded_batch_norm(training):
    x = np.random.default_rng(4).normal(0.5, 1.5, (2, 3, 4, 4, 3))
    x = x.astype("float32")
    tdbn = layers.TDBatchNormalization(momentum=0.5)
    bn = keras.layers.BatchNormalization(momentum=0.5)
    tdbn(x, training=True)
    layers.TimeFolded(bn)(x, training=True)
    np.testing.assert_allclose(
        tdbn(x, training=training),
        layers.TimeFolded(bn)(x, training=training),
        rtol=1e-5,
        atol=1e-5,
    )


def _tdbn_step(layer, x, training):
    """Output, gradients (input, gamma, beta) and moving statistics."""
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, "float32") ** 3)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [
        np.asarray(v, "float64")
        for v in (y, *grads, layer.moving_mean, layer.moving_variance)
    ]


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 6, 4), (2, 3, 4, 4, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_tdbn_equals_the_composed_equations(shape, training):
    # float32 channels-last runs TensorFlow's fused kernel; `synchronized`
    # (no effect without a strategy) keeps Eq. 5-8 as Keras ops.
    import tensorflow as tf

    rng = np.random.default_rng(11)
    x = rng.normal(0.7, 1.8, shape).astype("float32")
    moving = rng.normal(size=shape[-1]), rng.uniform(0.5, 2, shape[-1])
    results = []
    for synchronized in (False, True):
        layer = layers.TDBatchNormalization(
            alpha=0.6, threshold=1.4, momentum=0.7, synchronized=synchronized
        )
        layer.build(shape)
        random_affine(layer, np.random.default_rng(12))
        layer.moving_mean.assign(moving[0])
        layer.moving_variance.assign(moving[1])
        results.append(_tdbn_step(layer, x, training))
        graph = tf.function(lambda v, layer=layer: layer(v, training=training))
        ops = {
            op.type
            for op in graph.get_concrete_function(x).graph.get_operations()
        }
        assert ("FusedBatchNormV3" in ops) is not synchronized
    for fused, composed in zip(*results, strict=True):
        np.testing.assert_allclose(fused, composed, rtol=2e-5, atol=2e-5)


def test_fused_tdbn_in_bfloat16_follows_the_equations():
    rng = np.random.default_rng(14)
    x = rng.normal(1.0, 2.0, (4, 3, 5, 5, 8)).astype("float32")
    layer = layers.TDBatchNormalization(
        alpha=0.5, threshold=2.0, dtype="mixed_bfloat16"
    )
    layer.build(x.shape)
    random_affine(layer, rng)
    y = layer(x, training=True)
    assert y.dtype == "bfloat16"
    ref, (mean, var) = tdbn_reference(
        x.astype("float64"),
        layer.gamma.numpy(),
        layer.beta.numpy(),
        0.5,
        2.0,
        layer.epsilon,
    )
    # bfloat16 keeps 8 significant bits: outputs within about 1%.
    np.testing.assert_allclose(np.asarray(y, "float64"), ref, atol=0.05)
    np.testing.assert_allclose(layer.moving_mean, 0.1 * mean, rtol=2e-2)
    np.testing.assert_allclose(
        layer.moving_variance, 0.9 + 0.1 * var, rtol=2e-2
    )


def test_tdbn_inference_uses_moving_statistics():
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 1.0, (2, 3, 4, 4, 3))
    layer = layers.TDBatchNormalization(
        alpha=0.7, threshold=1.5, dtype="float64"
    )
    layer.build(x.shape)
    random_affine(layer, rng)
    mean, var = rng.normal(0, 1, 3), rng.uniform(0.5, 2.0, 3)
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(var)
    ref, _ = tdbn_reference(
        x,
        layer.gamma.numpy(),
        layer.beta.numpy(),
        0.7,
        1.5,
        1e-3,
        stats=(mean, var),
    )
    for training in (False, None):
        y = layer(x, training=training).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    # A frozen layer runs in inference mode even with training=True.
    layer.trainable = False
    np.testing.assert_allclose(
        layer(x, training=True).numpy(), ref, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)
    np.testing.assert_array_equal(layer.moving_variance.numpy(), var)


def test_tdbn_channel_axis_not_last():
    x = np.random.default_rng(6).normal(2.0, 3.0, (2, 3, 4, 5))
    layer = layers.TDBatchNormalization(
        alpha=0.5, threshold=3.0, axis=2, momentum=0.0, dtype="float64"
    )
    y = layer(x, training=True).numpy()
    moved = np.moveaxis(x, 2, -1)
    ref, (mean, var) = tdbn_reference(moved, 1.0, 0.0, 0.5, 3.0, 1e-3)
    np.testing.assert_allclose(y, np.moveaxis(ref, -1, 2), rtol=1e-10)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var)


def test_tdbn_without_center_and_scale_has_no_weights():
    layer = layers.TDBatchNormalization(
        alpha=0.5, center=False, scale=False, dtype="float64"
    )
    x = np.random.default_rng(7).normal(1.0, 2.0, (3, 4, 2))
    y = layer(x, training=True).numpy()
    assert layer.gamma is None and layer.beta is None
    assert not layer.trainable_weights and len(layer.weights) == 2
    ref, _ = tdbn_reference(x, 1.0, 0.0, 0.5, 1.0, 1e-3)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


def test_tdbn_trains_gamma_and_beta_and_mixed_precision():
    x = np.random.default_rng(8).normal(size=(4, 3, 6)).astype("float32")
    inputs = keras.Input((3, 6))
    norm = layers.TDBatchNormalization(threshold=0.5, dtype="mixed_float16")
    outputs = norm(inputs)
    assert outputs.dtype == "float16"
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    model.fit(x, np.ones_like(x), epochs=1, verbose=0)
    assert not np.allclose(norm.gamma.numpy(), 1.0)
    assert not np.allclose(norm.beta.numpy(), 0.0)
    assert norm.moving_mean.dtype == "float32"


def test_tdbn_symbolic_and_dynamic_time():
    inputs = keras.Input((None, 4, 4, 3))
    outputs = layers.TDBatchNormalization()(inputs)
    assert tuple(outputs.shape) == (None, None, 4, 4, 3)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(9).normal(size=(2, 5, 4, 4, 3)).astype("f4")
    assert model(x, training=True).shape == x.shape


# --------------------------------------------------------------------------
# Folding (Zheng et al. 2021, Eq. 9-10)


def train_step(model, x, rng):
    """One training-mode call, then random affine weights: non-trivial BN."""
    model(x, training=True)
    for layer in model.layers:
        norm = getattr(layer, "layer", layer)
        if hasattr(norm, "moving_mean"):
            random_affine(norm, rng)


@pytest.mark.parametrize("center,scale", [(True, True), (False, False)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_fold_dense_tdbn(center, scale, use_bias):
    rng = np.random.default_rng(10)
    x = rng.normal(0.5, 1.0, (4, 3, 6)).astype("float32")
    dense = keras.layers.Dense(5, use_bias=use_bias)
    norm = layers.TDBatchNormalization(
        alpha=0.7, threshold=1.5, center=center, scale=scale
    )
    model = keras.Sequential([keras.Input((3, 6)), dense, norm])
    train_step(model, x, rng)
    kernel, *bias = dense.get_weights()
    folded_kernel, folded_bias = functional.fold_batch_norm(
        kernel,
        bias[0] if bias else None,
        *functional.batch_norm_parameters(norm),
    )
    folded = keras.layers.Dense(5)
    folded.build((None, 6))
    folded.set_weights([folded_kernel, folded_bias])
    np.testing.assert_allclose(
        folded(x), model(x, training=False), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "make_norm",
    [
        lambda: layers.TDBatchNormalization(alpha=0.5, threshold=2.0),
        lambda: layers.TimeFolded(keras.layers.BatchNormalization()),
        lambda: keras.layers.BatchNormalization(),
    ],
    ids=["tdbn", "time_folded_keras_bn", "keras_bn"],
)
def test_fold_conv2d(make_norm):
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 1.0, (2, 3, 6, 6, 2)).astype("float32")
    conv = keras.layers.Conv2D(4, 3, padding="same")
    norm = make_norm()
    model = keras.Sequential(
        [keras.Input((3, 6, 6, 2)), layers.TimeFolded(conv), norm]
    )
    train_step(model, x, rng)
    folded_kernel, folded_bias = functional.fold_batch_norm(
        *conv.get_weights(), *functional.batch_norm_parameters(norm)
    )
    folded = keras.layers.Conv2D(4, 3, padding="same")
    folded.build((None, 6, 6, 2))
    folded.set_weights([folded_kernel, folded_bias])
    np.testing.assert_allclose(
        layers.TimeFolded(folded)(x),
        model(x, training=False),
        rtol=1e-5,
        atol=1e-5,
    )


def test_fold_batch_norm_formula_and_dtypes():
    rng = np.random.default_rng(12)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    bias = rng.normal(size=4)
    gamma, beta = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.1, 2, 4)
    w, b = functional.fold_batch_norm(
        kernel, bias, gamma, beta, mean, var, 1e-3, scale=0.5
    )
    factor = gamma * 0.5 / np.sqrt(var + 1e-3)
    assert w.dtype == b.dtype == np.float32 and w.shape == kernel.shape
    np.testing.assert_allclose(w, kernel * factor, rtol=1e-6)
    np.testing.assert_allclose(b, (bias - mean) * factor + beta, rtol=1e-6)
    w, b = functional.fold_batch_norm(kernel, None, None, None, mean, var, 1)
    np.testing.assert_allclose(w, kernel / np.sqrt(var + 1), rtol=1e-6)
    np.testing.assert_allclose(b, -mean / np.sqrt(var + 1), rtol=1e-6)


def test_fold_errors():
    kernel = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match=r"`gamma` must have shape \(4,\)"):
        functional.fold_batch_norm(
            kernel, None, np.ones(3), None, np.zeros(4), np.ones(4), 1e-3
        )
    with pytest.raises(ValueError, match="at least 2 axes"):
        functional.fold_batch_norm(
            np.ones(4), None, None, None, np.zeros(4), np.ones(4), 1e-3
        )
    with pytest.raises(ValueError, match="built BatchNormalization"):
        functional.batch_norm_parameters(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="built BatchNormalization"):
        functional.batch_norm_parameters(layers.TDBatchNormalization())
    norm = layers.TDBatchNormalization(axis=2)
    norm.build((None, 3, 4, 5))
    with pytest.raises(ValueError, match="last axis.*Received: axis=2"):
        functional.batch_norm_parameters(norm)


# --------------------------------------------------------------------------
# Synchronized statistics across replicas

DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json
    import os

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from keras_snn import layers

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 2, 2, 3)).astype("float32")
    x[2:] = 3.0 * x[2:] + 2.0  # the second replica's half differs
    result = {"x": x.tolist()}
    for synchronized in (True, False):
        with strategy.scope():
            layer = layers.TDBatchNormalization(
                alpha=0.5, threshold=2.0, momentum=0.0,
                synchronized=synchronized,
            )
            layer.build((None, 3, 2, 2, 3))
        data = tf.data.Dataset.from_tensor_slices(x).batch(4)
        batch = next(iter(strategy.experimental_distribute_dataset(data)))

        @tf.function
        def step(batch):
            return strategy.run(
                lambda b: layer(b, training=True), args=(batch,)
            )

        outputs = step(batch)

        def per_replica(value):
            local = strategy.experimental_local_results(value)
            return [v.numpy().tolist() for v in local]

        result[str(synchronized)] = {
            "mean": per_replica(layer.moving_mean.value),
            "variance": per_replica(layer.moving_variance.value),
            "outputs": per_replica(outputs),
        }
    print("RESULT" + json.dumps(result))
    """
)


def test_synchronized_statistics_on_two_replicas():
    run = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = [s for s in run.stdout.splitlines() if s.startswith("RESULT")][0]
    result = json.loads(line[len("RESULT") :])
    x = np.asarray(result["x"])
    axes = (0, 1, 2, 3)

    synced = result["True"]
    for mean, variance in zip(synced["mean"], synced["variance"], strict=True):
        np.testing.assert_allclose(mean, x.mean(axes), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(variance, x.var(axes), rtol=1e-5)
    ref, _ = tdbn_reference(x, 1.0, 0.0, 0.5, 2.0, 1e-3)
    outputs = np.concatenate(synced["outputs"], axis=0)
    np.testing.assert_allclose(outputs, ref, rtol=1e-4, atol=1e-4)

    # Control: unsynchronized replicas keep the statistics of their half.
    local = result["False"]
    for replica, half in enumerate((x[:2], x[2:])):
        np.testing.assert_allclose(
            local["mean"][replica], half.mean(axes), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            local["variance"][replica], half.var(axes), rtol=1e-5
        )
    assert not np.allclose(local["mean"][0], local["mean"][1], atol=0.5)
    assert not np.allclose(local["mean"][0], synced["mean"][0], atol=0.5)


# --------------------------------------------------------------------------
# NeuNorm (Wu et al. 2019, Eq. 9-10)


def neunorm_reference(spikes, weight, decay, scale):
    """Eq. 9-10 with an explicit loop over time and feature maps."""
    features = spikes.shape[-1]
    x = np.zeros(spikes.shape[:1] + spikes.shape[2:-1])
    states, outputs = [], []
    for t in range(spikes.shape[1]):
        total = sum(spikes[:, t, ..., f] for f in range(features))
        x = decay * x + scale / features * total  # Eq. 9
        states.append(x)
        outputs.append(spikes[:, t] - weight * x[..., None])  # Eq. 10
    return np.stack(states, 1)[..., None], np.stack(outputs, 1)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("unroll", [None, False])
def test_neunorm_matches_equations(shape, unroll):
    rng = np.random.default_rng(20)
    spikes = (rng.uniform(size=SHAPES[shape]) < 0.4).astype("float64")
    layer = layers.NeuNorm(
        decay=0.8,
        scale=0.3,
        weight_initializer=keras.initializers.RandomNormal(seed=1),
        unroll=unroll,
        dtype="float64",
    )
    outputs = layer(spikes).numpy()
    weight = layer.auxiliary_weight.numpy()
    assert weight.shape == SHAPES[shape][2:]
    ref_states, ref_outputs = neunorm_reference(spikes, weight, 0.8, 0.3)
    np.testing.assert_allclose(
        layer.auxiliary_states(spikes).numpy(), ref_states, rtol=1e-12
    )
    np.testing.assert_allclose(outputs, ref_outputs, rtol=1e-12, atol=1e-14)


def test_neunorm_dynamic_time_and_default_identity():
    inputs = keras.Input((None, 3, 3, 4))
    norm = layers.NeuNorm(
        weight_initializer=keras.initializers.RandomNormal(seed=2)
    )
    model = keras.Model(inputs, norm(inputs))
    spikes = np.random.default_rng(21).uniform(size=(2, 5, 3, 3, 4)) < 0.5
    spikes = spikes.astype("float32")
    # scale=None means v = 1 - k: x is a moving average of the mean rate.
    assert norm.effective_scale == pytest.approx(0.1)
    _, ref = neunorm_reference(spikes, norm.auxiliary_weight.numpy(), 0.9, 0.1)
    np.testing.assert_allclose(model(spikes), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layers.NeuNorm()(spikes), spikes)


def test_neunorm_step_numpy_in_numpy_out_and_weight_gradient():
    spikes = np.array([[[1.0, 0.0, 1.0, 1.0]]])  # (batch, location, F)
    x = functional.neunorm_step(spikes, np.full((1, 1, 1), 2.0), 0.5, 0.2)
    assert isinstance(x, np.ndarray)
    np.testing.assert_allclose(x, [[[0.5 * 2.0 + 0.2 / 4 * 3]]])
    np.testing.assert_allclose(
        functional.neunorm_output(spikes, x, np.ones(4)), spikes - x
    )
    import tensorflow as tf

    norm = layers.NeuNorm(decay=0.5, scale=1.0)
    seq = tf.constant(np.ones((1, 2, 4), "float32"))
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(norm(seq))
    grad = tape.gradient(loss, norm.auxiliary_weight.value).numpy()
    # x = [1, 1.5]; d loss / d U_c = -(1 + 1.5) for every feature map.
    np.testing.assert_allclose(grad, -2.5)


@pytest.mark.parametrize("unroll", [None, False])
def test_both_layers_train_with_xla(unroll):
    inputs = keras.Input((3, 4, 4, 1))
    x = layers.TimeFolded(keras.layers.Conv2D(2, 3, padding="same"))(inputs)
    x = layers.TDBatchNormalization(threshold=0.5)(x)
    x = layers.LIF(threshold=0.5)(x)
    norm = layers.NeuNorm(decay=0.5, scale=0.25, unroll=unroll)
    x = layers.TimeFolded(keras.layers.Flatten())(norm(x))
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=True)
    data = np.random.default_rng(22).uniform(size=(8, 3, 4, 4, 1))
    model.fit(data.astype("float32"), np.ones(8), epochs=1, verbose=0)
    assert np.abs(norm.auxiliary_weight.numpy()).max() > 0


# --------------------------------------------------------------------------
# Arguments, errors, configs, saving


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (lambda: layers.TDBatchNormalization(alpha=-1), "Received: alpha=-1"),
        (
            lambda: layers.TDBatchNormalization(alpha=0),
            r"`alpha` of TDBatchNormalization must be",
        ),
        (
            lambda: layers.TDBatchNormalization(threshold=0.0),
            r"`threshold` of TDBatchNormalization must be a finite number > 0. "
            "Received: threshold=0.0",
        ),
        (
            lambda: layers.TDBatchNormalization(momentum=1.0),
            r"\[0, 1\). Received: momentum=1.0",
        ),
        (
            lambda: layers.TDBatchNormalization(momentum=-0.1),
            "Received: momentum=-0.1",
        ),
        (
            lambda: layers.TDBatchNormalization(epsilon=0),
            "`epsilon` of TDBatchNormalization must be a finite number > 0. "
            "Received: epsilon=0",
        ),
        (lambda: layers.TDBatchNormalization(axis=0), "Received: axis=0"),
        (lambda: layers.TDBatchNormalization(axis=1), "time.*axis=1"),
        (lambda: layers.TDBatchNormalization(axis="c"), "axis='c'"),
        (
            lambda: layers.NeuNorm(decay=1.5),
            r"`decay` of NeuNorm must be a number in \[0, 1\]. "
            "Received: decay=1.5",
        ),
        (lambda: layers.NeuNorm(decay=-0.1), "Received: decay=-0.1"),
        (lambda: layers.NeuNorm(scale=0), "`scale`.*Received: scale=0"),
        (lambda: layers.NeuNorm(decay=1.0), "decay=1.0, scale=None"),
        (lambda: layers.NeuNorm(scale=-2.0), "Received: scale=-2.0"),
        (lambda: layers.NeuNorm(unroll="yes"), "Received: unroll='yes'"),
    ],
)
def test_invalid_arguments(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


@pytest.mark.parametrize(
    "axis,shape",
    [(3, (2, 3, 4)), (-3, (2, 3, 4)), (-5, (2, 3, 4, 5)), (-9, (2, 3, 4))],
)
def test_tdbn_axis_out_of_range_or_on_batch_or_time(axis, shape):
    layer = layers.TDBatchNormalization(axis=axis)
    with pytest.raises(ValueError, match=f"Received: axis={axis}"):
        layer(np.zeros(shape, "float32"))


@pytest.mark.parametrize("make", [layers.TDBatchNormalization, layers.NeuNorm])
def test_rank_below_three_is_rejected(make):
    with pytest.raises(ValueError, match=r"rank >= 3.*\(4, 3\)"):
        make()(np.zeros((4, 3), "float32"))


def test_channel_count_mismatch_is_rejected():
    norm = layers.TDBatchNormalization()
    norm(np.zeros((2, 3, 4), "float32"))
    pattern = r"expected axis 2 .*value 4.*\(2, 3, 5\)"
    with pytest.raises(ValueError, match=pattern):
        norm(np.zeros((2, 3, 5), "float32"))
    neunorm = layers.NeuNorm()
    neunorm(np.zeros((2, 3, 4, 4, 2), "float32"))
    with pytest.raises(ValueError, match="incompatible"):
        neunorm(np.zeros((2, 3, 4, 5, 2), "float32"))


def test_neunorm_rejects_unknown_feature_shape_and_integers():
    with pytest.raises(ValueError, match="known feature shape"):
        layers.NeuNorm()(keras.Input((3, None, 2)))
    with pytest.raises(TypeError, match="dtype=int32"):
        layers.NeuNorm()(np.zeros((1, 2, 3), "int32"))


def test_save_and_load_model_with_both_layers(tmp_path):
    rng = np.random.default_rng(30)
    inputs = keras.Input((4, 6, 6, 1))
    x = layers.TimeFolded(keras.layers.Conv2D(3, 3, padding="same"))(inputs)
    x = layers.TDBatchNormalization(alpha=0.7, threshold=0.5)(x)
    x = layers.LIF(threshold=0.5)(x)
    x = layers.NeuNorm(
        decay=0.8,
        scale=0.2,
        weight_initializer=keras.initializers.RandomNormal(seed=3),
    )(x)
    x = layers.TimeFolded(keras.layers.Flatten())(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    data = rng.uniform(0, 1, (3, 4, 6, 6, 1)).astype("float32")
    model(data, training=True)  # non-trivial moving statistics
    path = tmp_path / "normalization.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        loaded.predict(data, verbose=0), model.predict(data, verbose=0)
    )
    norm = next(
        layer
        for layer in loaded.layers
        if isinstance(layer, layers.TDBatchNormalization)
    )
    assert norm.alpha == 0.7 and norm.threshold == 0.5
