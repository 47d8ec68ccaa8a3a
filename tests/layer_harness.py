"""One test harness for every public layer of `keras_snn.layers`.

In the style of keras-hub's `TestCase.run_layer_test`, written for
keras_snn: each check takes a `LayerCase` (a layer factory and an input
shape) and holds it to one contract:

- `check_config_round_trip`: `get_config` is JSON-serializable,
  `from_config` rebuilds the same config, `serialize_keras_object` /
  `deserialize_keras_object` give back the same class, and the rebuilt
  layer, with the same weights, gives the same outputs.
- `check_xla`: the layer called inside `tf.function(jit_compile=True)`
  gives the outputs of the eager call.
- `check_mixed_precision`: under the `"mixed_float16"` policy the layer
  runs and gives finite outputs in the compute dtype, `float16`.
- `save_models` / `load_in_fresh_process`: a `.keras` archive of a model
  around each layer loads in a new Python process with
  `keras.models.load_model` and no `custom_objects` (only
  `import keras_snn`, which registers the classes), and gives the same
  outputs. One process loads every archive, to keep it cheap.

Cells (`LIFCell`, `IFCell`, `CubaLIFCell`, `ALIFCell`) are run inside
`keras.layers.RNN`; the wrapper in `LayerCase.wrap` says so.
"""

import copy
import dataclasses
import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_snn import layers
from keras_snn import surrogates


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """A public layer and how to call it.

    Args:
        factory: callable taking base layer keyword arguments (`dtype`,
            `name`) and returning a new layer.
        input_shape: tuple, the input shape with the batch axis.
        data: `"current"` (normal values), `"probability"` (in [0, 1])
            or `"spikes"` (0/1).
        wrap: callable that puts the layer into the layer actually called
            (a cell into `keras.layers.RNN`), or `None`.
        mixed_precision: bool, whether the layer supports
            `"mixed_float16"`.
        xla_exact: bool, whether XLA gives the eager outputs exactly. A
            seeded random encoder draws other (equally valid) numbers
            under XLA, since TensorFlow's stateless random ops may pick
            another generator there; its XLA outputs are only checked for
            shape, dtype, 0/1 values and repeatability.
    """

    factory: object
    input_shape: tuple
    data: str = "current"
    wrap: object = None
    mixed_precision: bool = True
    xla_exact: bool = True

    def make(self, **kwargs):
        """Returns `(layer, callable)`: the layer and what is called."""
        layer = self.factory(**kwargs)
        return layer, self.wrap(layer, **kwargs) if self.wrap else layer

    def inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        if self.data == "probability":
            return rng.uniform(size=self.input_shape).astype("float32")
        if self.data == "spikes":
            x = rng.uniform(size=self.input_shape) < 0.4
            return x.astype("float32")
        return rng.normal(0.0, 1.0, self.input_shape).astype("float32")


def _rnn(cell, **kwargs):
    return keras.layers.RNN(cell, return_sequences=True, **kwargs)


def _outputs(value):
    """The first output of a layer (LIF may return several), as NumPy."""
    if isinstance(value, (list, tuple)):
        value = value[0]
    return keras.ops.convert_to_numpy(value)


# Every public layer of keras_snn.layers, by its name in `__all__`.
CASES = {
    "ALIF": LayerCase(
        lambda **kw: layers.ALIF(
            threshold=0.6,
            decay=0.7,
            adaptation=0.5,
            adaptation_decay=0.8,
            reset="soft",
            trainable_threshold="neuron",
            trainable_decay="channel",
            return_potentials=True,
            **kw,
        ),
        (2, 6, 5),
    ),
    "ALIFCell": LayerCase(
        lambda **kw: layers.ALIFCell(
            threshold=0.5, adaptation=0.3, surrogate="atan", units=5, **kw
        ),
        (2, 6, 5),
        wrap=_rnn,
    ),
    "CubaLIF": LayerCase(
        lambda **kw: layers.CubaLIF(
            threshold=0.8,
            decay=0.6,
            current_decay=0.4,
            trainable_threshold="channel",
            trainable_decay="neuron",
            trainable_current_decay=True,
            decay_parameterization="sigmoid",
            **kw,
        ),
        (2, 6, 3, 3, 2),
    ),
    "CubaLIFCell": LayerCase(
        lambda **kw: layers.CubaLIFCell(
            threshold=0.7, current_decay=0.3, units=5, **kw
        ),
        (2, 6, 5),
        wrap=_rnn,
    ),
    "BernoulliEncoding": LayerCase(
        lambda **kw: layers.BernoulliEncoding(4, seed=1, **kw),
        (2, 5),
        data="probability",
        xla_exact=False,
    ),
    "Decoding": LayerCase(
        lambda **kw: layers.Decoding(
            3,
            use_bias=False,
            kernel_regularizer=keras.regularizers.L2(1e-3),
            **kw,
        ),
        (2, 4, 6),
        data="spikes",
    ),
    "DeltaEncoding": LayerCase(
        lambda **kw: layers.DeltaEncoding(0.5, polarity="on_off", **kw),
        (2, 5, 3),
    ),
    "DirectEncoding": LayerCase(
        lambda **kw: layers.DirectEncoding(3, **kw), (2, 5)
    ),
    "IF": LayerCase(
        lambda **kw: layers.IF(threshold=0.8, reset="soft", **kw), (2, 6, 5)
    ),
    "IFCell": LayerCase(
        lambda **kw: layers.IFCell(threshold=0.8, units=5, **kw),
        (2, 6, 5),
        wrap=_rnn,
    ),
    "LIF": LayerCase(
        lambda **kw: layers.LIF(
            threshold=0.7,
            decay=0.3,
            reset="soft",
            surrogate=surrogates.ATan(3.0),
            detach_reset=True,
            trainable_decay=True,
            return_potentials=True,
            **kw,
        ),
        (2, 6, 5),
    ),
    "LatencyEncoding": LayerCase(
        lambda **kw: layers.LatencyEncoding(5, threshold=0.2, **kw),
        (2, 6),
        data="probability",
    ),
    "LIFCell": LayerCase(
        lambda **kw: layers.LIFCell(
            threshold=0.5, decay=0.6, surrogate="triangle", units=5, **kw
        ),
        (2, 6, 5),
        wrap=_rnn,
    ),
    "MembraneReadout": LayerCase(
        lambda **kw: layers.MembraneReadout(
            3, decay=0.5, mode="max", bias_constraint="non_neg", **kw
        ),
        (2, 4, 6),
        data="spikes",
    ),
    "NeuNorm": LayerCase(
        lambda **kw: layers.NeuNorm(
            decay=0.5, scale=0.25, weight_regularizer="l2", unroll=False, **kw
        ),
        (2, 4, 3, 3, 2),
        data="spikes",
    ),
    "PoissonEncoding": LayerCase(
        lambda **kw: layers.PoissonEncoding(4, seed=2, **kw),
        (2, 5),
        data="probability",
        xla_exact=False,
    ),
    "TDBatchNormalization": LayerCase(
        lambda **kw: layers.TDBatchNormalization(
            alpha=0.7,
            threshold=0.5,
            momentum=0.9,
            epsilon=1e-5,
            gamma_regularizer="l2",
            beta_constraint="non_neg",
            **kw,
        ),
        (2, 4, 3, 3, 2),
    ),
    "Recompute": LayerCase(
        lambda **kw: layers.Recompute(
            keras.Sequential(
                [
                    layers.TimeFolded(
                        keras.layers.Dense(3, dtype=kw.get("dtype"))
                    ),
                    layers.LIF(threshold=0.5, dtype=kw.get("dtype")),
                ]
            ),
            **kw,
        ),
        (2, 4, 5),
    ),
    "TimeFolded": LayerCase(
        lambda **kw: layers.TimeFolded(
            keras.layers.Dense(3, dtype=kw.get("dtype")), **kw
        ),
        (2, 4, 5),
    ),
    "Voting": LayerCase(
        lambda **kw: layers.Voting(3, population=2, **kw),
        (2, 4, 6),
        data="spikes",
    ),
}


def _built(case, **kwargs):
    layer, call = case.make(**kwargs)
    x = case.inputs()
    y = _outputs(call(x, training=False))
    return layer, call, x, y


def check_config_round_trip(case):
    layer, call, x, y = _built(case)
    config = layer.get_config()
    json.dumps(config)
    # Keras' `Wrapper.from_config` pops "layer" from the dict it is given.
    clone = type(layer).from_config(copy.deepcopy(config))
    assert clone.get_config() == config
    if isinstance(layer, keras.layers.RNN):
        assert "cell" not in config  # a flat config, as Keras' SimpleRNN
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer)
    assert restored.get_config() == config
    clone_call = case.wrap(clone) if case.wrap else clone
    clone_call(x, training=False)  # build
    clone_call.set_weights(call.get_weights())
    np.testing.assert_array_equal(_outputs(clone_call(x, training=False)), y)


def check_xla(case):
    _, call, x, y = _built(case)
    compiled = tf.function(lambda v: call(v, training=False), jit_compile=True)
    y_xla = _outputs(compiled(tf.constant(x)))
    if case.xla_exact:
        np.testing.assert_allclose(y_xla, y, rtol=1e-5, atol=1e-6)
        return
    assert y_xla.shape == y.shape and y_xla.dtype == y.dtype
    assert set(np.unique(y_xla)) <= {0.0, 1.0}
    np.testing.assert_array_equal(_outputs(compiled(tf.constant(x))), y_xla)


def check_mixed_precision(case):
    layer, call = case.make(dtype="mixed_float16")
    y = _outputs(call(case.inputs(), training=False))
    assert layer.compute_dtype == "float16"
    assert y.dtype == np.float16, y.dtype
    assert np.all(np.isfinite(y))


def save_models(cases, directory):
    """Saves a model around each case's layer, with its inputs and outputs.

    Returns:
        The directory, holding `<name>.keras` and `<name>.npz` per case.
    """
    directory = pathlib.Path(directory)
    for name, case in cases.items():
        _, call = case.make()
        x = case.inputs()
        inputs = keras.Input(case.input_shape[1:])
        model = keras.Model(inputs, call(inputs))
        model.save(directory / f"{name}.keras")
        y = _outputs(model(x, training=False))
        np.savez(directory / f"{name}.npz", x=x, y=y)
    return directory


# Runs in the fresh process: `import keras_snn` registers the classes, and
# nothing else is passed to `load_model`.
_LOADER = """
import json, pathlib, sys
import numpy as np
import keras_snn
import keras
results = {}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.keras")):
    data = np.load(path.with_suffix(".npz"))
    try:
        model = keras.models.load_model(path)
        out = model(data["x"], training=False)
        if isinstance(out, (list, tuple)):
            out = out[0]
        diff = np.abs(keras.ops.convert_to_numpy(out) - data["y"])
        results[path.stem] = float(diff.max())
    except Exception as error:
        results[path.stem] = f"{type(error).__name__}: {error}"[:2000]
print("RESULTS " + json.dumps(results))
"""


def load_in_fresh_process(directory):
    """Loads every `.keras` archive of `directory` in a new process.

    Returns:
        A dict: name to the largest absolute output difference (a float),
        or to the error the load or call raised (a str).
    """
    result = subprocess.run(
        [sys.executable, "-c", _LOADER, str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULTS "):
            return json.loads(line[len("RESULTS ") :])
    raise AssertionError(
        f"the loader process failed (rc={result.returncode}):\n"
        f"{result.stderr[-3000:]}"
    )


def harness_tests(cases, label):
    """The harness's tests over `cases`, for a test module to bind.

    Returns, in this order: `test_config_round_trip`,
    `test_xla_gives_the_eager_outputs`, `test_mixed_precision`, the
    module-scoped fixture `harness_archives` (one fresh process loads every
    case's `.keras` archive) and `test_keras_archive_loads_in_a_fresh_process`.
    Bind all five at module level under these names.
    """
    import pytest

    names = sorted(cases)

    @pytest.mark.parametrize("name", names)
    def test_config_round_trip(name):
        check_config_round_trip(cases[name])

    @pytest.mark.parametrize("name", names)
    def test_xla_gives_the_eager_outputs(name):
        check_xla(cases[name])

    @pytest.mark.parametrize("name", names)
    def test_mixed_precision(name):
        case = cases[name]
        if not case.mixed_precision:
            pytest.skip(f"{name} does not support mixed_float16")
        check_mixed_precision(case)

    @pytest.fixture(scope="module")
    def harness_archives(tmp_path_factory):
        directory = save_models(cases, tmp_path_factory.mktemp(label))
        return load_in_fresh_process(directory)

    @pytest.mark.parametrize("name", names)
    def test_keras_archive_loads_in_a_fresh_process(name, harness_archives):
        result = harness_archives[name]
        assert not isinstance(result, str), result
        assert result == 0.0

    return (
        test_config_round_trip,
        test_xla_gives_the_eager_outputs,
        test_mixed_precision,
        harness_archives,
        test_keras_archive_loads_in_a_fresh_process,
    )
