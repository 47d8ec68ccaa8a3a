"""Spiking activity of a model: which layers spike, how often, and when.

Also the synaptic operation counts (AC/MAC) and energy estimate of
`energy_report` (Zheng et al. 2021, App. D; Srinivasan et al. 2020).
"""

import dataclasses
import warnings

import keras
import numpy as np

from keras_snn import functional
from keras_snn.layers.checks import silence_warning
from keras_snn.layers.neurons import LIF

__all__ = ["firing_rates", "spike_trains", "spiking_layers"]


def spiking_layers(model):
    """Returns the model's spiking neuron layers (`LIF`, `IF`) in order."""
    return [layer for layer in model.layers if isinstance(layer, LIF)]


def _spike_model(model):
    found = spiking_layers(model)
    if not found:
        raise ValueError(
            f"Model '{model.name}' has no spiking layers (keras_snn.layers.LIF "
            "or IF) to record. Received: layers="
            f"{[type(layer).__name__ for layer in model.layers]}"
        )
    outputs = []
    for layer in found:
        output = layer.output
        # With return_potentials/return_state the spikes come first.
        outputs.append(
            output[0] if isinstance(output, (list, tuple)) else output
        )
    return keras.Model(model.inputs, outputs), found


def spike_trains(model, x, batch_size=256):
    """Records the spikes of every spiking layer for inputs `x`.

    Args:
        model: a functional or sequential Keras model with keras_snn
            neuron layers.
        x: model inputs (NumPy array or tensor), batch-major.
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        A dict from layer name to a NumPy array of spikes shaped
        `(batch, time, ...)`, in the order the layers appear.

    Example:

    ```python
    trains = keras_snn.analysis.spike_trains(model, x_test[:1])
    ```
    """
    recorder, found = _spike_model(model)
    outputs = recorder.predict(x, batch_size=batch_size, verbose=0)
    if len(found) == 1:
        outputs = [outputs]
    return {
        layer.name: np.asarray(out)
        for layer, out in zip(found, outputs, strict=True)
    }


def firing_rates(model, x, batch_size=256):
    """Mean firing rate (spikes per neuron per time step) of each layer.

    Args:
        model: a Keras model with keras_snn neuron layers.
        x: model inputs.
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        A dict from layer name to its mean firing rate in [0, 1].
    """
    return {
        name: float(spikes.mean())
        for name, spikes in spike_trains(model, x, batch_size).items()
    }


def silent_layers(model, x):
    """Names of the spiking layers that do not fire at all on `x`.

    The model runs once in training mode (batch statistics in the batch
    norms, as on the first training step); its non-trainable variables
    (moving statistics, stateful neurons' states) are restored afterwards.

    Args:
        model: a Keras model with keras_snn neuron layers.
        x: a batch of model inputs (one training batch is enough).

    Returns:
        A list of layer names, in model order; empty if every layer fires.
    """
    recorder, found = _spike_model(model)
    saved = [variable.numpy() for variable in model.non_trainable_variables]
    # The layers' own first-batch check stays for the real first batch.
    checked = [layer._silence_checked for layer in found]
    for layer in found:
        layer._silence_checked = True
    try:
        # The recorder is built on `model.inputs`, a list.
        inputs = x if isinstance(x, (list, tuple, dict)) else [x]
        outputs = recorder(inputs, training=True)
    finally:
        for variable, value in zip(
            model.non_trainable_variables, saved, strict=True
        ):
            variable.assign(value)
        for layer, flag in zip(found, checked, strict=True):
            layer._silence_checked = flag
    if len(found) == 1:
        outputs = [outputs]
    return [
        layer.name
        for layer, spikes in zip(found, outputs, strict=True)
        if float(keras.ops.max(spikes)) <= 0.0
    ]


class SilentLayerWarning(keras.callbacks.Callback):
    """Warns at the start of `fit` about spiking layers that never fire.

    Layers of `keras_snn` check their first training batch themselves when
    `fit` runs eagerly or in a `tf.function` (Keras' default on CPU). XLA
    (`jit_compile=True`) cannot call back into Python from the compiled
    step, so a model compiled with XLA needs this callback, given a batch
    of training inputs: it runs the model on it once in training mode
    before the first step and warns (`UserWarning`) for each silent layer.

    Args:
        x: a batch of training inputs (e.g. `x_train[:64]`).

    Example:

    ```python
    model.fit(x, y, callbacks=[keras_snn.analysis.SilentLayerWarning(x[:64])])
    ```
    """

    def __init__(self, x):
        super().__init__()
        self.x = x

    def on_train_begin(self, logs=None):
        silent = silent_layers(self.model, self.x)
        for layer in spiking_layers(self.model):
            # The layer's own first-batch check would repeat the warning.
            layer._silence_checked = True
            if layer.name in silent:
                warnings.warn(silence_warning(layer), UserWarning, stacklevel=2)


__all__ += ["SilentLayerWarning", "silent_layers"]

# ---------------------------------------------------------------------------
# Activity and synaptic operations (Zheng et al. 2021, App. D, Fig. 6 and
# Table 6; Srinivasan et al. 2020, Sec. 3.2 and Table 1).
# ---------------------------------------------------------------------------

__all__ += [
    "ENERGY_45NM",
    "EnergyReport",
    "count_macs",
    "energy_report",
    "spikes_per_neuron",
    "synaptic_operations",
]

# Energy per operation in a 45 nm CMOS process, in joules (Horowitz,
# "Computing's energy problem", ISSCC 2014, as tabulated by Han et al. 2015,
# ref. [26] of Srinivasan et al. 2020): 32-bit float add 0.9 pJ and
# multiply 3.7 pJ, so an accumulate (AC) costs 0.9 pJ and a
# multiply-accumulate (MAC) 0.9 + 3.7 = 4.6 pJ; 32-bit integer add 0.1 pJ
# and multiply 3.1 pJ (AC 0.1 pJ, MAC 3.2 pJ).
ENERGY_45NM = {
    "float32": {"ac": 0.9e-12, "mac": 4.6e-12},
    "int32": {"ac": 0.1e-12, "mac": 3.2e-12},
}

# Layers that pass spikes on without synaptic operations of their own; a
# synaptic layer fed through them from a spiking layer is spike-driven.
_TRANSPARENT = (
    keras.layers.Flatten,
    keras.layers.Dropout,
    keras.layers.Reshape,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.BatchNormalization,
)


def spikes_per_neuron(model, x, batch_size=256):
    """Average number of spikes per neuron of each spiking layer.

    The activity of Zheng et al. 2021, Fig. 6: for each spiking layer the
    spikes over the `T` steps of a sample, averaged over its neurons and
    over the samples of `x` (= firing rate times `T`).

    Args:
        model: a Keras model with keras_snn neuron layers.
        x: model inputs.
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        A dict from layer name to the mean spike count per neuron per
        sample.
    """
    result = {}
    for name, spikes in spike_trains(model, x, batch_size).items():
        result[name] = float(spikes.sum(axis=1).mean())
    return result


def _inner(layer):
    inner = getattr(layer, "layer", None)
    return inner if isinstance(layer, keras.layers.Wrapper) else layer


def _synaptic_kind(layer):
    """'conv', 'dense', 'readout' or None for a (wrapped) layer."""
    from keras_snn.layers.readout import Decoding
    from keras_snn.layers.readout import MembraneReadout

    if isinstance(layer, (Decoding, MembraneReadout)):
        return "readout"
    inner = _inner(layer)
    if type(inner) in (keras.layers.Conv1D, keras.layers.Conv2D):
        return "conv"
    if type(inner) is keras.layers.Dense:
        return "dense"
    return None


def _source(layer):
    """Classifies what feeds `layer`: 'spikes', 'input' or 'rates'.

    Walks back through layers that neither compute synapses nor change
    the time structure (`_TRANSPARENT`, wrapped or not) to the first layer
    that does: a spiking layer gives 'spikes' (the synaptic layer is
    spike-driven), the model input or an encoder gives 'input' (encoding
    layer), anything else (e.g. a time average) gives 'rates'.
    """
    from keras_snn.layers.encoding import _Encoding

    current = layer
    while True:
        nodes = current._inbound_nodes
        parents = nodes[0].parent_nodes if nodes else []
        if len(parents) != 1:
            return "input" if not parents else "rates"
        parent = parents[0].operation
        if isinstance(parent, LIF):
            return "spikes"
        if isinstance(parent, (keras.layers.InputLayer, _Encoding)):
            return "input"
        if isinstance(_inner(parent), _TRANSPARENT):
            current = parent
            continue
        return "rates"


def _fan_out_ops(layer, inputs):
    """Per-sample AC count of a synaptic layer on recorded inputs.

    Every non-zero input value triggers one accumulate per synapse it
    feeds (Zheng et al. 2021, App. D: `x = sum_j w_j o_j` with `o_j` in
    {0, 1}, computed only for received spikes). For a dense layer that is
    `units * nnz(x)`; for a convolution it is `filters` times the number
    of (output position, kernel tap) pairs whose input is non-zero, the
    convolution of the non-zero mask with an all-ones kernel, which counts
    padding and strides exactly.
    """
    from keras import ops

    inner = _inner(layer)
    nonzero = ops.cast(ops.not_equal(inputs, 0), "float32")
    if isinstance(inner, keras.layers.Dense):
        count = ops.sum(nonzero, axis=tuple(range(1, len(inputs.shape))))
        return count * inner.units
    # Fold time into the batch, as TimeFolded does.
    folded = ops.reshape(nonzero, (-1, *nonzero.shape[-3:]))
    ones = ops.ones((*inner.kernel_size, folded.shape[-1], 1), "float32")
    taps = ops.conv(
        folded,
        ones,
        strides=inner.strides,
        padding=inner.padding,
        dilation_rate=inner.dilation_rate,
    )
    per_step = ops.sum(taps, axis=(1, 2, 3)) * inner.filters
    batch = ops.shape(inputs)[0]
    return ops.sum(ops.reshape(per_step, (batch, -1)), axis=1)


def _dense_macs(layer, input_shape):
    """MACs of one evaluation of a synaptic layer (no time axis)."""
    inner = _inner(layer)
    kind = _synaptic_kind(layer)
    if kind == "readout":
        return int(input_shape[-1]) * int(layer.units)
    if kind == "dense":
        return int(input_shape[-1]) * int(inner.units)
    output_shape = inner.compute_output_shape((1, *input_shape))
    positions = int(np.prod(output_shape[1:-1]))
    taps = int(np.prod(inner.kernel_size)) * int(input_shape[-1])
    return positions * taps * int(inner.filters)


def _feature_shape(layer):
    """Input shape of one evaluation: without batch and time axes."""
    shape = tuple(layer.input.shape[1:])
    wrapped = isinstance(layer, keras.layers.Wrapper)
    readout = _synaptic_kind(layer) == "readout"
    return shape[1:] if (wrapped or readout) else shape


def count_macs(model):
    """Multiply-accumulates of one inference of a non-spiking equivalent.

    Sums, over the `Conv1D`/`Conv2D`/`Dense` layers (wrapped in
    `TimeFolded` or not) and the keras_snn readouts, one evaluation of
    every synapse: `positions * kh * kw * C_in * filters` for a
    convolution and `inputs * units` for a dense layer. On a keras_snn
    model this is the MAC count of the equivalent ANN (same architecture,
    one pass, no time steps); on a Keras ANN, its MAC count.

    Args:
        model: a built Keras model.

    Returns:
        Dict from layer name to MACs, in model order.
    """
    return {
        layer.name: _dense_macs(layer, _feature_shape(layer))
        for layer in model.layers
        if _synaptic_kind(layer) is not None
    }


def synaptic_operations(model, x, batch_size=256):
    """Per-sample synaptic operations of each synaptic layer of an SNN.

    Following Zheng et al. 2021 (App. D, Table 6), ignoring activation
    functions and membrane updates:

    - a layer fed by spikes (through pooling/flatten/dropout) is
      spike-driven and does accumulates (AC): one per received non-zero
      input and synapse, measured on `x` (see `_fan_out_ops`). An average
      pooling between the spikes and the layer passes on values that are
      not 0/1; each non-zero one is still counted as one AC per synapse,
      since the pooling can be merged into the next layer's weights.
    - the encoding layer (fed by the real-valued input, e.g. through
      `DirectEncoding`) does multiply-accumulates (MAC): all its synapses
      at every time step.
    - the readout (`Decoding`, `MembraneReadout`, or a layer fed by time
      averages) does MACs: all its synapses once, since the time average
      is taken before its matrix product.

    Args:
        model: a functional keras_snn model.
        x: model inputs.
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        A list of dicts, one per synaptic layer in model order, with
        `layer`, `role` (`"spike-driven"`, `"encoding"` or `"readout"`),
        `op` (`"AC"` or `"MAC"`) and `ops` (mean per sample).
    """
    from keras import ops

    rows = []
    measured = []
    for layer in model.layers:
        kind = _synaptic_kind(layer)
        if kind is None:
            continue
        source = _source(layer)
        shape = tuple(layer.input.shape[1:])
        if kind == "readout" or source == "rates":
            dense = _dense_macs(layer, _feature_shape(layer))
            row = {"layer": layer.name, "role": "readout", "op": "MAC"}
            row["ops"] = float(dense)
        elif source == "input":
            steps = shape[0] if isinstance(layer, keras.layers.Wrapper) else 1
            dense = _dense_macs(layer, _feature_shape(layer))
            row = {"layer": layer.name, "role": "encoding", "op": "MAC"}
            row["ops"] = float(dense * (steps or 1))
        else:
            row = {"layer": layer.name, "role": "spike-driven", "op": "AC"}
            measured.append((len(rows), layer))
        rows.append(row)
    if measured:
        probe = keras.Model(
            model.inputs[0], [layer.input for _, layer in measured]
        )
        totals = np.zeros(len(measured))
        count = 0
        x = np.asarray(x)
        for start in range(0, len(x), batch_size):
            outputs = probe(x[start : start + batch_size], training=False)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            for i, ((_, layer), out) in enumerate(
                zip(measured, outputs, strict=True)
            ):
                per_sample = _fan_out_ops(layer, out)
                totals[i] += float(ops.convert_to_numpy(ops.sum(per_sample)))
            count += len(x[start : start + batch_size])
        for (index, _), total in zip(measured, totals, strict=True):
            rows[index]["ops"] = total / max(count, 1)
    return rows


@dataclasses.dataclass
class EnergyReport:
    """Result of `energy_report`: activity, operations and energy.

    Attributes:
        spikes_per_neuron: dict, layer name -> mean spikes per neuron per
            sample (Zheng et al. 2021, Fig. 6).
        operations: list of dicts from `synaptic_operations`.
        ann_macs: dict, layer -> MACs of the equivalent ANN per sample.
        energy_per_ac: joules per AC.
        energy_per_mac: joules per MAC.
    """

    spikes_per_neuron: dict
    operations: list
    ann_macs: dict
    energy_per_ac: float
    energy_per_mac: float

    @property
    def snn_acs(self):
        return sum(r["ops"] for r in self.operations if r["op"] == "AC")

    @property
    def snn_macs(self):
        return sum(r["ops"] for r in self.operations if r["op"] == "MAC")

    @property
    def snn_energy(self):
        """Joules per sample: `ACs * E_AC + MACs * E_MAC`."""
        return (
            self.snn_acs * self.energy_per_ac
            + self.snn_macs * self.energy_per_mac
        )

    @property
    def ann_energy(self):
        """Joules per sample of the ANN: `MACs * E_MAC`."""
        return sum(self.ann_macs.values()) * self.energy_per_mac

    @property
    def energy_ratio(self):
        """ANN energy divided by SNN energy (> 1: the SNN is cheaper)."""
        return self.ann_energy / self.snn_energy if self.snn_energy else None

    def to_dict(self):
        return {
            "spikes_per_neuron": dict(self.spikes_per_neuron),
            "operations": [dict(r) for r in self.operations],
            "ann_macs": dict(self.ann_macs),
            "snn_acs": self.snn_acs,
            "snn_macs": self.snn_macs,
            "ann_total_macs": sum(self.ann_macs.values()),
            "energy_per_ac_j": self.energy_per_ac,
            "energy_per_mac_j": self.energy_per_mac,
            "snn_energy_j": self.snn_energy,
            "ann_energy_j": self.ann_energy,
            "energy_ratio": self.energy_ratio,
        }

    def table(self):
        """A plain-text (markdown) table of the report."""
        lines = [
            "| spiking layer | spikes / neuron / sample |",
            "|---|---:|",
        ]
        for name, value in self.spikes_per_neuron.items():
            lines.append(f"| {name} | {value:.3f} |")
        lines += [
            "",
            "| synaptic layer | role | SNN ops / sample | ANN MACs |",
            "|---|---|---:|---:|",
        ]
        for row in self.operations:
            ann = self.ann_macs.get(row["layer"])
            ann_text = "" if ann is None else f"{ann:.3g}"
            lines.append(
                f"| {row['layer']} | {row['role']} | {row['ops']:.3g} "
                f"{row['op']} | {ann_text} |"
            )
        ann_total = sum(self.ann_macs.values())
        lines += [
            "",
            f"SNN: {self.snn_acs:.3g} AC + {self.snn_macs:.3g} MAC = "
            f"{self.snn_energy * 1e9:.3f} nJ / sample "
            f"(E_AC = {self.energy_per_ac * 1e12:.2f} pJ, "
            f"E_MAC = {self.energy_per_mac * 1e12:.2f} pJ)",
            f"ANN: {ann_total:.3g} MAC = {self.ann_energy * 1e9:.3f} nJ "
            "/ sample",
            f"ANN / SNN energy: {self.energy_ratio:.2f}x",
        ]
        return "\n".join(lines)


def energy_report(
    model,
    x,
    energy_per_ac=ENERGY_45NM["float32"]["ac"],
    energy_per_mac=ENERGY_45NM["float32"]["mac"],
    ann=None,
    batch_size=256,
):
    """Activity, synaptic operations and energy of an SNN versus an ANN.

    `E_SNN = N_AC * E_AC + N_MAC * E_MAC` per sample, with the counts of
    `synaptic_operations` (AC for spike-driven layers, MAC for the encoding
    and readout layers, Zheng et al. 2021, App. D and Table 6), against
    `E_ANN = N_MAC(ANN) * E_MAC` (Srinivasan et al. 2020, Sec. 3.2 and
    Table 1). The default energies are the 32-bit floating-point figures
    of a 45 nm process (Horowitz 2014 via Han et al. 2015, ref. [26] of
    Srinivasan et al.): 0.9 pJ per AC (one add) and 4.6 pJ per MAC
    (3.7 pJ multiply + 0.9 pJ add); `ENERGY_45NM["int32"]` gives the
    32-bit integer ones (0.1 pJ, 3.2 pJ). Memory access energy is not
    counted.

    Args:
        model: the keras_snn model.
        x: inputs to measure the activity on.
        energy_per_ac: joules per accumulate. Defaults to `0.9e-12`.
        energy_per_mac: joules per multiply-accumulate. Defaults to
            `4.6e-12`.
        ann: `None` or a Keras ANN to compare with; `None` uses the
            equivalent ANN of `model` (same synaptic layers, one pass,
            `count_macs(model)`).
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        An `EnergyReport`; `report.table()` prints it.

    Example:

    ```python
    report = keras_snn.analysis.energy_report(model, x_test)
    print(report.table())
    ```

    Reference:
        Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
        Neural Networks", AAAI 2021, App. D (Fig. 6, Table 6).
        Horowitz, "Computing's energy problem (and what we can do about
        it)", ISSCC 2014.
    """
    energy_per_ac = functional.validate_number(
        energy_per_ac, "energy_per_ac", "a number >= 0", lambda v: v >= 0
    )
    energy_per_mac = functional.validate_number(
        energy_per_mac, "energy_per_mac", "a number >= 0", lambda v: v >= 0
    )
    return EnergyReport(
        spikes_per_neuron=spikes_per_neuron(model, x, batch_size),
        operations=synaptic_operations(model, x, batch_size),
        ann_macs=count_macs(model if ann is None else ann),
        energy_per_ac=energy_per_ac,
        energy_per_mac=energy_per_mac,
    )
