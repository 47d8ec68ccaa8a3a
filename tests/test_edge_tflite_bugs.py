"""Regressions of the TFLite target found by random networks (issue 13).

- A `MembraneReadout` head's potential is both the step's output `y` and
  its state, so the step model has one tensor under two signature names;
  TFLite-Micro and the integer reference lost one of them
  (`KeyError: 'v_membrane_readout'`). The integer (16x8) model keeps the
  one tensor.
- A neuron layer whose potential spans 255 or more got an int8
  GREATER_EQUAL input scale of 1 or more, on which TFLite-Micro's
  `ComparisonsPrepare` aborts (SIGABRT, no message). The integer model
  compares int32 potentials with no scale (CAST, then GREATER_EQUAL).
- A failing TFLite-Micro run reported an empty message.
- A hard-reset layer that fires at every step on the calibration data had
  a constant selection the int8 converter could not calibrate; the
  integer model needs no calibration of its selections. A layer that never
  fires is refused by the quantizer, which names it.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
from edge_models import conv_model
from edge_models import fold
from edge_models import images

from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge.errors import CalibrationError
from edge.errors import ConsumerError
from edge.errors import consumer_failure
from edge.errors import run_consumer
from edge.targets.tflite import converter as tflite
from edge.targets.tflite import integer_model
from edge.targets.tflite import step_model
from keras_snn import layers


def _dense_membrane(reset):
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(3)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(16))(x)
    x = layers.LIF(threshold=0.5, decay=0.5, reset=reset)(x)
    outputs = layers.MembraneReadout(4, decay=0.9, mode="last")(x)
    return keras.Model(inputs, outputs, name=f"dense_membrane_{reset}")


def _conv_membrane(reset):
    return conv_model(timesteps=2, reset=reset, head="membrane")


def _minimal_wide_potential():
    """The issue's minimal case: one column of weights at -20 makes the
    LIF layer's potential span about 600 on inputs in [0, 1]."""
    inputs = keras.Input((16,))
    x = layers.DirectEncoding(3)(inputs)
    dense = keras.layers.Dense(4)
    x = fold(dense)(x)
    x = layers.LIF(threshold=1.0, decay=0.9, reset="soft")(x)
    model = keras.Model(inputs, layers.Decoding(2)(x), name="minimal")
    kernel, bias = dense.get_weights()
    kernel = np.random.default_rng(2).uniform(-0.2, 0.6, kernel.shape)
    kernel[:, 0] = -20.0
    dense.set_weights([kernel.astype("float32"), bias])
    return model


def _inputs(model, count, seed):
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *shape)).astype("float32")


def _export(make, *args):
    keras.utils.set_random_seed(5)
    model = make(*args)
    graph = fuse.fuse(ir.extract(model))
    return model, graph, _inputs(model, 48, seed=1)


def _integer(graph, calibration):
    """The quantized graph and its integer (16x8) TFLite model."""
    qgraph = quantize.quantize(graph, calibration)
    return qgraph, integer_model.build_integer_model(qgraph)


def _all_integer_consumers(qgraph, model_bytes, x):
    """The raw integer outputs of the integer reference, LiteRT (default
    and reference kernels) and TFLite-Micro."""
    reference = integer.run_integer(qgraph, x)[1]
    litert = [
        integer_model.run_integer_steps(
            tflite.LiteRTRunner(model_bytes, reference_kernels), qgraph, x
        )[1]
        for reference_kernels in (False, True)
    ]
    tflm = integer_model.run_integer_tflm(model_bytes, qgraph, x)[1]
    return reference, [*litert, tflm]


# -- MembraneReadout heads ---------------------------------------------------
MEMBRANE = [
    (_dense_membrane, "hard"),
    (_dense_membrane, "soft"),
    (_conv_membrane, "hard"),
    (_conv_membrane, "soft"),
]


@pytest.fixture(
    scope="module",
    params=MEMBRANE,
    ids=[f"{make.__name__[1:]}-{reset}" for make, reset in MEMBRANE],
)
def membrane(request):
    model, graph, x = _export(*request.param)
    qgraph, model_bytes = _integer(graph, x[:32])
    return model, graph, x[32:], qgraph, model_bytes


def test_membrane_readout_state_and_output_share_a_tensor(membrane):
    _, _, _, _, model_bytes = membrane
    inputs, outputs = tflite.io_names(model_bytes)
    (shared,) = {names for names in outputs if "y" in names}
    assert len(shared) == 2 and shared[0].startswith("v_membrane_readout")
    named = {name for names in outputs for name in names}
    assert named == set(inputs) - {"x"} | {"y"}


def test_membrane_readout_float32_tflite_equals_keras(membrane):
    model, graph, x, _, _ = membrane
    float_bytes = tflite.convert(graph)
    runner = tflite.LiteRTRunner(float_bytes)
    output = np.concatenate(
        [step_model.run_steps(runner, graph, x[i : i + 1])[0] for i in (0, 1)]
    )
    expected = model.predict(x[:2], verbose=0)
    np.testing.assert_allclose(output, expected, atol=1e-4)


def test_membrane_readout_int16x8_bit_exact_in_litert_tflm_and_reference(
    membrane,
):
    model, graph, x, qgraph, model_bytes = membrane
    x = x[:6]
    reference, consumers = _all_integer_consumers(qgraph, model_bytes, x)
    assert reference.shape == (len(x), graph.timesteps, model.output_shape[1])
    assert len(np.unique(reference)) > 3  # real potentials, not a constant
    for raw in consumers:
        np.testing.assert_array_equal(raw, reference)


# -- Potentials that span 255 or more ------------------------------------------
@pytest.fixture(scope="module")
def wide():
    return _export(_minimal_wide_potential)


def test_wide_potential_int16x8_runs_in_tflm_bit_exact(wide):
    model, graph, x = wide
    qgraph, model_bytes = _integer(graph, x[:32])
    (lif,) = [n for n in qgraph.graph.nodes if n.op == "neuron"]
    # The potential spans 255 or more: its int16 range in real units.
    assert lif.params["scale"] * 32767 >= 255
    # The comparison is on int32 potentials with no quantization: nothing
    # for TFLite-Micro's ComparisonsPrepare to refuse.
    flat = tflite._unpack(model_bytes)
    tensors = flat.subgraphs[0].tensors
    schema = tflite._schema()
    compares = [
        op for name, op in tflite._operators(flat) if name == "GREATER_EQUAL"
    ]
    assert compares
    for op in compares:
        for index in op.inputs:
            assert tensors[index].type == schema.TensorType.INT32
            quantization = tensors[index].quantization
            assert quantization is None or not quantization.scale
    reference, consumers = _all_integer_consumers(qgraph, model_bytes, x[32:])
    assert len(np.unique(reference)) > 1  # the layer fires on some inputs
    for raw in consumers:
        np.testing.assert_array_equal(raw, reference)
    # The integer model still follows the float one.
    output = integer.run_integer(qgraph, x[32:])[0]
    expected = model.predict(x[32:], verbose=0)
    assert np.mean(output.argmax(1) == expected.argmax(1)) >= 0.75


def test_wide_potential_float32_is_unchanged(wide):
    model, graph, x = wide
    runner = tflite.LiteRTRunner(tflite.convert(graph))
    output = step_model.run_steps(runner, graph, x[:2])[0]
    np.testing.assert_allclose(
        output, model.predict(x[:2], verbose=0), atol=1e-4
    )


def _unpreparable_model():
    """A comparison of int8 tensors in scale 2: TFLite-Micro's
    `ComparisonsPrepare` needs a scale below 1 and aborts."""
    writer = integer_model._Writer("minimal")
    x = writer.tensor("x", (1, 4), "int8", 2.0)
    threshold = writer.tensor("threshold", (1,), "int8", 2.0, data=[3])
    y = writer.tensor("y", (1, 4), "bool")
    writer.op("GREATER_EQUAL", [x, threshold], [y])
    return writer.finish([("x", x)], [("y", y)])


def test_tflm_abort_is_reported_with_its_signal():
    message = (
        r"TFLite-Micro on 'minimal' failed \(killed by SIGABRT\): "
        r"\(it printed nothing\)"
    )
    with pytest.raises(ConsumerError, match=message):
        tflite.run_tflm_arrays(
            _unpreparable_model(), np.ones((1, 1, 1, 4), np.int8), {},
            "minimal",
        )


def test_consumer_failure_carries_the_consumers_message():
    code = "import sys; sys.stderr.write('bad tensor 7\\n'); sys.exit(3)"
    done = run_consumer([sys.executable, "-c", code], "worker")
    error = consumer_failure("worker", done)
    assert str(error) == "worker failed (exit status 3): bad tensor 7"
    done = subprocess.CompletedProcess([], -9, stdout="last line", stderr="")
    assert str(consumer_failure("worker", done)) == (
        "worker failed (killed by SIGKILL): last line"
    )


def _constant_hard_reset(bias):
    """dense-LIF(hard)-Decoding whose LIF never fires (bias -50) or fires
    at every step (bias 50) on inputs in [0, 1]."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((16,))
    x = layers.DirectEncoding(2)(inputs)
    dense = keras.layers.Dense(4, bias_initializer="zeros")
    x = fold(dense)(x)
    x = layers.LIF(threshold=1.0, decay=0.9, reset="hard")(x)
    model = keras.Model(inputs, layers.Decoding(2)(x), name="minimal")
    kernel, _ = dense.get_weights()
    dense.set_weights([kernel, np.full(4, bias, "float32")])
    return model, fuse.fuse(ir.extract(model))


def test_a_hard_reset_layer_firing_at_every_step_is_bit_exact():
    # The int8 converter could not calibrate the hard reset's constant
    # selection; the integer model's selections need no calibration.
    model, graph = _constant_hard_reset(50.0)
    x = _inputs(model, 12, seed=0)
    qgraph, model_bytes = _integer(graph, x[:8])
    reference, consumers = _all_integer_consumers(qgraph, model_bytes, x[8:])
    _, _, trace = integer.run_integer(qgraph, x[8:], record=True)
    (lif,) = [n.name for n in graph.nodes if n.op == "neuron"]
    assert np.all(np.stack(trace[lif]) == 1)
    for raw in consumers:
        np.testing.assert_array_equal(raw, reference)


def test_a_silent_layer_is_named_by_the_quantizer():
    # The layer after a silent one gets no input: its scale ratio cannot
    # be expressed, and the error names the silent layer.
    model, graph = _constant_hard_reset(-50.0)
    message = r"layer\(s\) 'lif\w*' \(layer 'lif\w*'\) never fire"
    with pytest.raises(CalibrationError, match=message):
        quantize.quantize(graph, _inputs(model, 8, seed=0))


def test_export_of_a_membrane_readout_to_tflite(tmp_path):
    # The issue's reproduction: edge.export failed with "TFLite-Micro failed
    # on 'conv_membrane_hard' (exit 1): ... KeyError: 'v_membrane_readout'".
    import edge

    keras.utils.set_random_seed(7)
    model = conv_model(head="membrane")
    x = images(48, seed=9)
    report = edge.export(
        model,
        tmp_path / "out",
        targets=("tflite", "tflite-int16x8"),
        calibration_data=x[:32],
        eval_data=(x[32:], np.arange(16) % 10),
        allow_accuracy_drop=True,  # an untrained model: not the point here
        verbose=0,
    )
    rows = [row for row in report.rows if row.target == "tflite-int16x8"]
    assert {row.consumer for row in rows} == {
        "LiteRT",
        "LiteRT (reference kernels)",
        "TFLite-Micro",
    }
    for row in rows:
        assert row.checks["tflm_equals_integer_reference"] is True
        assert row.checks["litert_equals_integer_reference"] is True
        assert (
            row.checks["litert_reference_kernels_equals_integer_reference"]
            is True
        )
    assert report.row("tflite-float32").max_abs_diff < 1e-4
