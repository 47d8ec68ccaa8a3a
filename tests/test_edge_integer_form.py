"""Graphs the integer reference used to refuse: a batch norm on spikes
before a dense or "valid" convolution is folded into it and an identity
shortcut of spikes into an add gets an identity affine node
(`edge.quantize.integer_form`); "same" average pooling with windows over
the border divides by each window's count as TFLite does
(`keras_snn.fixed_point.rounded_average`). The rewritten graph computes the
float values of the fused one, and every integer consumer (LiteRT,
TFLite-Micro, the C runtime) computes the integer reference's integers.
"""

import keras
import numpy as np
import pytest
from edge_models import images
from edge_models import set_batch_norm_statistics

from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge import reference
from edge.errors import UnsupportedLayerError
from edge.targets import c as c_target
from edge.targets.tflite import converter
from edge.targets.tflite import integer_model
from keras_snn import layers

fold = layers.TimeFolded


def _norm_on_spikes(padding):
    """conv-LIF-BN-(conv or dense)-LIF-Decoding: the BN reads spikes."""
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Conv2D(4, 3, padding="same"))(x)
    x = layers.LIF(threshold=0.3, decay=0.5)(x)
    x = fold(keras.layers.BatchNormalization())(x)
    if padding == "dense":
        x = fold(keras.layers.Flatten())(x)
        x = fold(keras.layers.Dense(12))(x)
        x = layers.LIF(threshold=0.4, decay=0.75, reset="soft")(x)
    else:
        x = fold(keras.layers.Conv2D(5, 3, padding=padding))(x)
        x = layers.LIF(threshold=0.4, decay=0.75, reset="soft")(x)
        x = fold(keras.layers.Flatten())(x)
    outputs = layers.Decoding(3)(x)
    return set_batch_norm_statistics(keras.Model(inputs, outputs))


def _identity_shortcut():
    """conv-LIF, then conv plus the LIF's own spikes into an add-LIF."""
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(3)(inputs)
    x = fold(keras.layers.Conv2D(4, 3, padding="same"))(x)
    spikes = layers.LIF(threshold=0.3, decay=0.5)(x)
    y = fold(keras.layers.Conv2D(4, 3, padding="same"))(spikes)
    y = keras.layers.Add()([y, spikes])
    y = layers.IF(threshold=0.5, reset="hard")(y)
    y = fold(keras.layers.Flatten())(y)
    outputs = layers.Decoding(3)(y)
    return keras.Model(inputs, outputs)


def _pool_over_the_border():
    """conv-LIF-AvgPool(2, "same") on 5x5 (windows over the border)."""
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(3)(inputs)
    x = fold(keras.layers.Conv2D(4, 2, padding="valid"))(x)
    x = layers.LIF(threshold=0.3, decay=0.5)(x)
    x = fold(keras.layers.AveragePooling2D(2, padding="same"))(x)
    x = fold(keras.layers.Conv2D(5, 3, padding="valid"))(x)
    x = layers.LIF(threshold=0.3, decay=0.5, reset="soft")(x)
    x = fold(keras.layers.Flatten())(x)
    outputs = layers.Decoding(3)(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(
    scope="module", params=["dense", "valid", "shortcut", "pool_border"]
)
def case(request):
    keras.utils.set_random_seed(3)
    if request.param == "shortcut":
        model = _identity_shortcut()
    elif request.param == "pool_border":
        model = _pool_over_the_border()
    else:
        model = _norm_on_spikes(request.param)
    fused = fuse.fuse(ir.extract(model))
    calibration = images(48, (6, 6, 1), seed=1)
    return request.param, fused, calibration, images(6, (6, 6, 1), seed=2)


def test_the_rewrite_keeps_the_float_values(case):
    name, fused, calibration, _ = case
    rewritten = quantize.integer_form(fused)
    ops = [node.op for node in rewritten.nodes]
    if name == "shortcut":
        assert ops.count("affine") == 1  # the identity before the add
    elif name == "pool_border":
        assert ops == [node.op for node in fused.nodes]  # nothing to rewrite
    else:
        assert "affine" in [n.op for n in fused.nodes]
        assert "affine" not in ops  # folded into the next layer
    original = reference.run_float(fused, calibration)
    again = reference.run_float(rewritten, calibration)
    np.testing.assert_allclose(again, original, rtol=1e-9, atol=1e-9)


def test_every_integer_consumer_computes_the_reference(case, tmp_path):
    _, fused, calibration, x = case
    qgraph = quantize.quantize(fused, calibration)
    expected = integer.run_integer(qgraph, x)[1]
    model_bytes = integer_model.build_integer_model(qgraph)
    for kernels in (False, True):
        runner = converter.LiteRTRunner(model_bytes, kernels)
        raw = integer_model.run_integer_steps(runner, qgraph, x)[1]
        np.testing.assert_array_equal(raw, expected)
    raw = integer_model.run_integer_tflm(model_bytes, qgraph, x)[1]
    np.testing.assert_array_equal(raw, expected)
    raw, _ = c_target.run_c(qgraph, x, tmp_path, "host")
    np.testing.assert_array_equal(raw, expected)


def test_a_pool_over_the_border_divides_by_its_count():
    # Spikes 1 everywhere: every window's average is 1, i.e. 4 units of
    # 1/4, also where fewer than 4 positions are inside (a sum would give
    # 2 or 1 there).
    keras.utils.set_random_seed(3)
    qgraph = quantize.quantize(
        fuse.fuse(ir.extract(_pool_over_the_border())),
        images(16, (6, 6, 1), seed=1),
    )
    pool = next(n for n in qgraph.graph.nodes if n.op == "avg_pool")
    spikes = np.ones((1, 5, 5, 4), np.int64)
    out, _ = integer.apply_integer(pool, [spikes], None, 16)
    assert out.shape == (1, 3, 3, 4)
    np.testing.assert_array_equal(out, 4)


def test_a_same_convolution_after_a_norm_on_spikes_is_still_refused():
    keras.utils.set_random_seed(3)
    fused = fuse.fuse(ir.extract(_norm_on_spikes("same")))
    with pytest.raises(UnsupportedLayerError, match="feeds neither"):
        quantize.quantize(fused, images(16, (6, 6, 1), seed=1))
