"""Regressions of the TFLite target found by random networks (issue 13).

- A `MembraneReadout` head's potential is both the step's output `y` and
  its state, so the converted model has one tensor under two signature
  names; TFLite-Micro and the integer reference lost one of them
  (`KeyError: 'v_membrane_readout'`).
- A neuron layer whose potential spans 255 or more got an int8
  GREATER_EQUAL input scale of 1 or more, on which TFLite-Micro's
  `ComparisonsPrepare` aborts (SIGABRT, no message). The step model now
  compares `u * 2**-k` with `theta * 2**-k` for such a layer.
- A failing TFLite-Micro run reported an empty message.
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
from edge import ir
from edge.errors import CalibrationError
from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import consumer_failure
from edge.errors import run_consumer
from edge.targets.tflite import converter as tflite
from edge.targets.tflite import step_model
from edge.targets.tflite.tflm_reference import TFLiteIntegerReference
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


def _all_int8_consumers(model_bytes, graph, x):
    """The raw int8 outputs of LiteRT (reference kernels), the integer
    reference and TFLite-Micro, run by our step loops."""
    litert = tflite.run_quantized(
        tflite.LiteRTRunner(model_bytes, reference_kernels=True),
        graph,
        model_bytes,
        x,
    )[1]
    reference = tflite.run_quantized(
        tflite.IntegerReferenceRunner(model_bytes), graph, model_bytes, x
    )[1]
    tflm = tflite.run_tflm(model_bytes, graph, x)[1]
    return litert, reference, tflm


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
    int8 = tflite.convert(graph, "int8", x[:32])
    return model, graph, x[32:], int8


def test_membrane_readout_state_and_output_share_a_tensor(membrane):
    _, _, _, int8 = membrane
    inputs, outputs = tflite.io_names(int8)
    (shared,) = {names for names in outputs if "y" in names}
    assert len(shared) == 2 and shared[0].startswith("v_membrane_readout")
    named = {name for names in outputs for name in names}
    assert named == set(inputs) - {"x"} | {"y"}


def test_membrane_readout_float32_tflite_equals_keras(membrane):
    model, graph, x, _ = membrane
    float_bytes = tflite.convert(graph)
    runner = tflite.LiteRTRunner(float_bytes)
    output = np.concatenate(
        [step_model.run_steps(runner, graph, x[i : i + 1])[0] for i in (0, 1)]
    )
    expected = model.predict(x[:2], verbose=0)
    np.testing.assert_allclose(output, expected, atol=1e-4)


def test_membrane_readout_int8_bit_exact_in_litert_tflm_and_reference(
    membrane,
):
    model, graph, x, int8 = membrane
    litert, reference, tflm = _all_int8_consumers(int8, graph, x)
    assert reference.shape == (len(x), graph.timesteps, model.output_shape[1])
    assert len(np.unique(reference)) > 3  # real potentials, not a constant
    np.testing.assert_array_equal(litert, reference)
    np.testing.assert_array_equal(tflm, reference)


# -- Potentials that span 255 or more ------------------------------------------
@pytest.fixture(scope="module")
def wide():
    return _export(_minimal_wide_potential)


def test_comparison_factor_only_where_the_potential_is_wide(wide):
    _, graph, x = wide
    trace = tflite._calibration_trace(graph, x[:32])
    factors = step_model.comparison_factors(graph, trace)
    (name,) = factors
    assert graph.node(name).op == "neuron"
    # The span (about 600) times the factor is at most 127, and no larger
    # factor (a power of two) would do.
    assert factors[name] in (2.0**-3, 2.0**-4, 2.0**-5)
    keras.utils.set_random_seed(5)
    normal = fuse.fuse(ir.extract(_dense_membrane("soft")))
    normal_trace = tflite._calibration_trace(normal, images(8))
    assert step_model.comparison_factors(normal, normal_trace) == {}


def test_wide_potential_int8_runs_in_tflm_bit_exact(wide):
    model, graph, x = wide
    int8 = tflite.convert(graph, "int8", x[:32])
    # Every comparison input has a scale in (0, 1): the port, which
    # refuses any other scale as TFLM does, loads the model.
    reference_model = TFLiteIntegerReference(int8)
    assert "GREATER_EQUAL" in reference_model.ops
    litert, reference, tflm = _all_int8_consumers(int8, graph, x[32:])
    assert len(np.unique(reference)) > 1  # the layer fires on some inputs
    np.testing.assert_array_equal(litert, reference)
    np.testing.assert_array_equal(tflm, reference)
    # The int8 model still follows the float one.
    output = tflite.run_quantized(
        tflite.IntegerReferenceRunner(int8), graph, int8, x[32:]
    )[0]
    expected = model.predict(x[32:], verbose=0)
    assert np.mean(output.argmax(1) == expected.argmax(1)) >= 0.75


def test_wide_potential_float32_is_unchanged(wide):
    model, graph, x = wide
    runner = tflite.LiteRTRunner(tflite.convert(graph))
    output = step_model.run_steps(runner, graph, x[:2])[0]
    np.testing.assert_allclose(
        output, model.predict(x[:2], verbose=0), atol=1e-4
    )


def _without_factors(monkeypatch):
    monkeypatch.setattr(
        step_model, "comparison_factors", lambda graph, trace: {}
    )


def test_a_comparison_tflm_cannot_prepare_is_refused(wide, monkeypatch):
    _, graph, x = wide
    _without_factors(monkeypatch)
    with pytest.raises(ExportError, match=r"'minimal'.*scale.*0 < scale < 1"):
        tflite.convert(graph, "int8", x[:32])


def test_tflm_abort_is_reported_with_its_signal(wide, monkeypatch):
    _, graph, x = wide
    _without_factors(monkeypatch)
    monkeypatch.setattr(tflite, "_check_int8_model", lambda *args: None)
    int8 = tflite.convert(graph, "int8", x[:32])
    message = (
        r"TFLite-Micro on 'minimal' failed \(killed by SIGABRT\): "
        r"\(it printed nothing\)"
    )
    with pytest.raises(ConsumerError, match=message):
        tflite.run_tflm(int8, graph, x[:1])


def test_consumer_failure_carries_the_consumers_message():
    code = "import sys; sys.stderr.write('bad tensor 7\\n'); sys.exit(3)"
    done = run_consumer([sys.executable, "-c", code], "worker")
    error = consumer_failure("worker", done)
    assert str(error) == "worker failed (exit status 3): bad tensor 7"
    done = subprocess.CompletedProcess([], -9, stdout="last line", stderr="")
    assert str(consumer_failure("worker", done)) == (
        "worker failed (killed by SIGKILL): last line"
    )


@pytest.mark.parametrize(
    "bias, message",
    [
        (-50.0, r"layer\(s\) 'lif\w*' \(layer 'lif\w*'\) of 'minimal' never"),
        (50.0, r"layer\(s\) 'lif\w*' \(layer 'lif\w*'\) .* fires at every"),
    ],
)
def test_calibration_on_which_a_hard_reset_layer_is_constant_is_refused(
    bias, message
):
    # Silent: the spikes' selection gets the range [0, 0]. Firing at every
    # step: the hard reset's where(fire, 0, 1) does (it was reported as
    # "never fired").
    keras.utils.set_random_seed(5)
    inputs = keras.Input((16,))
    x = layers.DirectEncoding(2)(inputs)
    dense = keras.layers.Dense(4, bias_initializer="zeros")
    x = fold(dense)(x)
    x = layers.LIF(threshold=1.0, decay=0.9, reset="hard")(x)
    model = keras.Model(inputs, layers.Decoding(2)(x), name="minimal")
    kernel, _ = dense.get_weights()
    dense.set_weights([kernel, np.full(4, bias, "float32")])
    graph = fuse.fuse(ir.extract(model))
    with pytest.raises(CalibrationError, match=message):
        tflite.convert(graph, "int8", _inputs(model, 8, seed=0))


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
        targets=("tflite",),
        calibration_data=x[:32],
        eval_data=(x[32:], np.arange(16) % 10),
        allow_accuracy_drop=True,  # an untrained model: not the point here
        verbose=0,
    )
    int8 = [row for row in report.rows if row.target == "tflite-int8"]
    assert {row.consumer for row in int8} == {"LiteRT", "TFLite-Micro"}
    for row in int8:
        assert row.checks["tflm_equals_tflm_emulator"] is True
        assert row.checks["litert_equals_tflm_emulator"] is True
    assert report.row("tflite-float32").max_abs_diff < 1e-4
