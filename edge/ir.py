"""A small, explicit graph of what a keras_snn model computes at each step.

`extract(model)` walks a trained Keras model and returns a `Graph`: a list of
`Node`s in execution order, each one operation of a single time step
(convolution, dense, pooling, flatten, add, batch norm, a spiking neuron, a
leaky integrator), with its parameters as NumPy arrays. The time loop is not
part of the graph: every exporter runs the graph once per step, and
`Graph.aggregate` says how the caller combines the per-step outputs into
the model's output (the readout heads average over time, or keep the last
or the largest value).

The graph only holds what the exporters can express. Anything else is
refused by `extract` with an `UnsupportedLayerError` that names the layer
and lists what is supported. A neuron node of a model beyond LIF/IF
(current-based, adaptive, recurrent, per-channel parameters) carries the
params of `edge.neuron_models`; each target refuses what it does not
implement (`edge.neuron_models.require`).
"""

import dataclasses

import keras
import numpy as np

from edge import neuron_models
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from keras_snn import functional
from keras_snn import layers as snn

__all__ = ["AGGREGATES", "OPS", "Graph", "Node", "SUPPORTED_LAYERS", "extract"]

OPS = (
    "input",
    "conv2d",
    "dense",
    "avg_pool",
    "max_pool",
    "flatten",
    "add",
    "batch_norm",
    "affine",
    "neuron",
    "integrator",
)
STATEFUL_OPS = ("neuron", "integrator")
AGGREGATES = ("mean", "last", "max", "sequence")

SUPPORTED_LAYERS = (
    "InputLayer",
    "DirectEncoding",
    "Conv2D",
    "Dense",
    "AveragePooling2D",
    "MaxPooling2D",
    "Flatten",
    "Add",
    "BatchNormalization",
    "TDBatchNormalization",
    "Dropout",
    "LIF",
    "IF",
    "CubaLIF",
    "ALIF (also recurrent=True; the targets say which they accept)",
    "TimeFolded/TimeDistributed(<any of the above>)",
    "GlobalAveragePooling1D (mean over time, then only Dense)",
    "Decoding",
    "Voting",
    "MembraneReadout",
)


@dataclasses.dataclass
class Node:
    """One operation of a time step.

    Attributes:
        name: unique name (the Keras layer's name, with a suffix when one
            layer became several nodes).
        op: one of `OPS`.
        inputs: names of the nodes whose outputs this node reads.
        shape: per-sample output shape, without batch and time axes.
        params: parameters: NumPy arrays (`kernel`, `bias`, ...) and plain
            Python values (`strides`, `padding`, `threshold`, ...).
        layer: name of the Keras layer the node came from.
    """

    name: str
    op: str
    inputs: list
    shape: tuple
    params: dict = dataclasses.field(default_factory=dict)
    layer: str = ""

    def __repr__(self):
        return (
            f"Node({self.name!r}, op={self.op!r}, inputs={self.inputs}, "
            f"shape={self.shape})"
        )


@dataclasses.dataclass
class Graph:
    """A step graph extracted from a keras_snn model.

    Attributes:
        nodes: list of `Node` in execution order; `nodes[0]` is the input.
        output: name of the node whose value is the per-step output.
        aggregate: how the caller turns per-step outputs into the model's
            output: `"mean"` over time, the `"last"` step, the element-wise
            `"max"`, or the whole `"sequence"` `(batch, time, ...)`.
        timesteps: `T` of a direct-encoding model (the static input is
            repeated `T` times), or `None` when the model's input already
            has a time axis.
        name: the model's name.

    Example:

    >>> graph = edge.ir.extract(model)
    >>> [node.op for node in graph.nodes]
    ['input', 'conv2d', 'batch_norm', 'neuron', ...]
    >>> graph.state_nodes  # one state per neuron layer in the step models
    """

    nodes: list
    output: str
    aggregate: str = "mean"
    timesteps: int = None
    name: str = "model"

    def node(self, name):
        """Returns the node called `name`."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"No node named {name!r} in graph {self.name!r}")

    @property
    def input(self):
        return self.nodes[0]

    @property
    def input_shape(self):
        """Per-step input shape, without batch and time axes."""
        return self.nodes[0].shape

    @property
    def output_shape(self):
        return self.node(self.output).shape

    @property
    def state_nodes(self):
        """The stateful nodes (neurons, integrators), in execution order."""
        return [node for node in self.nodes if node.op in STATEFUL_OPS]

    def consumers(self, name):
        """The nodes that read the output of node `name`."""
        return [node for node in self.nodes if name in node.inputs]

    def ops(self):
        """The set of op names used."""
        return sorted({node.op for node in self.nodes})

    def replace(self, nodes):
        """A copy with `nodes` instead of this graph's nodes."""
        return dataclasses.replace(self, nodes=list(nodes))

    def summary(self):
        """One line per node: name, op, inputs, shape."""
        lines = [f"Graph {self.name!r}: aggregate={self.aggregate}"]
        for node in self.nodes:
            inputs = ", ".join(node.inputs)
            lines.append(
                f"  {node.name:<24} {node.op:<10} {str(node.shape):<16} "
                f"<- {inputs}"
            )
        return "\n".join(lines)


def extract(model, timesteps=None):
    """Extracts the step graph of a trained keras_snn model.

    Args:
        model: a built `keras.Model` (functional or `Sequential`) made of
            the layers in `SUPPORTED_LAYERS`, or the path of a `.keras` file.
        timesteps: optional int: overrides the `DirectEncoding`'s `T`.

    Returns:
        A `Graph` (batch norm not yet folded: see `edge.fuse`).

    Raises:
        UnsupportedLayerError: a layer, or a use of a layer, that the
            exporter cannot express; the message names it.
        ExportError: `model` is not a Keras model, or has no spiking
            neuron layer (it is not a keras_snn model).

    Example:

    >>> graph = edge.ir.extract(model)
    >>> print(graph.summary())
    """
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = _load(model)
    if not isinstance(model, keras.Model):
        raise ExportError(
            "Argument `model` must be a keras.Model or the path of a .keras "
            f"file. Received: model={model!r} of type {type(model).__name__}"
        )
    if not model.built or not model.inputs:
        raise ExportError(
            f"Model '{model.name}' must be built (called on data or created "
            "with keras.Input) before it can be exported."
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"Model '{model.name}' must have one input and one output to be "
            f"exported. Received: {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs"
        )
    builder = _Builder(model, timesteps)
    return builder.build()


def _load(path):
    import os

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportError(
            f"Argument `model` must be an existing .keras file. Received: "
            f"model={path!r} (no such file)"
        )
    import keras_snn  # noqa: F401  (registers the layers for loading)

    try:
        return keras.models.load_model(path)
    except Exception as error:
        raise ExportError(
            f"Could not load the Keras model {path!r}: "
            f"{type(error).__name__}: {error}"
        ) from error


def _unwrap(layer):
    """The layer inside TimeFolded/TimeDistributed, and whether it was."""
    if isinstance(layer, (snn.TimeFolded, keras.layers.TimeDistributed)):
        return layer.layer, True
    return layer, False


def _numpy(variable):
    return (
        None
        if variable is None
        else np.array(keras.ops.convert_to_numpy(variable))
    )


def _unsupported(layer, reason=None):
    kind = type(layer).__name__
    inner, wrapped = _unwrap(layer)
    if wrapped:
        kind = f"{kind}({type(inner).__name__} '{inner.name}')"
    text = f"Layer '{layer.name}' ({kind}) cannot be exported"
    text += f": {reason}" if reason else "."
    text += " Supported layers: " + ", ".join(SUPPORTED_LAYERS) + "."
    return UnsupportedLayerError(text)


def _per_step_shape(layer, shape, timed):
    shape = tuple(shape)
    drop = 2 if timed else 1
    if len(shape) <= drop:
        raise _unsupported(layer, f"unexpected tensor shape {shape}")
    out = shape[drop:]
    if any(dim is None for dim in out):
        raise _unsupported(
            layer,
            f"the exporter needs static feature shapes; received {shape}",
        )
    return out


class _Builder:
    """Walks the Keras graph in topological order and emits nodes."""

    def __init__(self, model, timesteps):
        self.model = model
        self.timesteps = timesteps
        self.nodes = []
        self.names = {}  # id(KerasTensor) -> node name
        self.timed = {}  # node name -> tensor still has a time axis
        self.aggregate = None
        self.encoded = False

    # -- graph walking -------------------------------------------------
    def operations(self):
        model = self.model
        if isinstance(model, keras.Sequential):
            functional_model = getattr(model, "_functional", None)
            if functional_model is not None:
                model = functional_model
        for operation in model.operations:
            if isinstance(operation, keras.Model):
                raise _unsupported(
                    operation,
                    "nested models are not supported; build one flat model",
                )
            yield operation, model

    def build(self):
        model = self.model
        for layer in model.layers:
            if isinstance(layer, snn.Recompute):
                raise _unsupported(
                    layer,
                    "Recompute only changes how training stores activations; "
                    "build the same network without Recompute (e.g. "
                    "spiking_resnet(..., recompute=False)), copy the weights "
                    "with `flat.set_weights(model.get_weights())` and export "
                    "that model",
                )
        if not any(isinstance(layer, snn.LIF) for layer in model.layers):
            raise ExportError(
                f"Model '{model.name}' is not a keras_snn model: it has no "
                "spiking neuron layer (keras_snn.layers.LIF or IF). The "
                "exporter converts spiking networks only."
            )
        encoders = (
            snn.DirectEncoding,
            snn.BernoulliEncoding,
            snn.PoissonEncoding,
        )
        self.sequence_input = not any(
            isinstance(layer, encoders) for layer in model.layers
        )
        for layer, owner in self.operations():
            if isinstance(layer, keras.layers.InputLayer):
                continue
            nodes = [n for n in layer._inbound_nodes if self._in_graph(n)]
            if len(nodes) != 1:
                raise _unsupported(
                    layer,
                    "a layer used more than once (shared weights) is not "
                    "supported",
                )
            node = nodes[0]
            inputs = list(node.input_tensors)
            outputs = list(node.output_tensors)
            if len(outputs) != 1:
                raise _unsupported(
                    layer,
                    "layers with several outputs (return_state, "
                    "return_potentials) are not supported",
                )
            names = [self._name_of(t, owner) for t in inputs]
            out_name = self.convert(layer, names, inputs, outputs[0])
            self.names[id(outputs[0])] = out_name
        if not self.nodes or self.nodes[0].op != "input":
            raise ExportError(f"Model '{model.name}' has no input.")
        output = self.names.get(id(self._model_output()))
        if output is None:
            raise ExportError(f"Could not trace the output of '{model.name}'.")
        aggregate = self.aggregate
        if aggregate is None:
            aggregate = "sequence" if self.timed[output] else "mean"
        return Graph(
            nodes=self.nodes,
            output=output,
            aggregate=aggregate,
            timesteps=self.timesteps,
            name=model.name,
        )

    def _in_graph(self, node):
        tensors = node.output_tensors
        return any(id(t) in self._model_tensor_ids for t in tensors)

    @property
    def _model_tensor_ids(self):
        ids = getattr(self, "_ids", None)
        if ids is None:
            ids = set()
            model = self.model
            if isinstance(model, keras.Sequential):
                model = getattr(model, "_functional", model)
            for operation in model.operations:
                for node in operation._inbound_nodes:
                    for tensor in node.output_tensors:
                        ids.add(id(tensor))
            self._ids = ids
        return ids

    def _model_output(self):
        model = self.model
        if isinstance(model, keras.Sequential):
            model = getattr(model, "_functional", model)
        outputs = model.outputs
        return outputs[0]

    def _name_of(self, tensor, owner):
        key = id(tensor)
        if key not in self.names:
            if any(id(t) == key for t in owner.inputs):
                self._add_input(tensor)
            else:
                raise ExportError(
                    f"Could not trace the input tensor {tensor!r} of the "
                    "model's graph."
                )
        return self.names[key]

    def _add_input(self, tensor):
        # A model with an encoding layer takes static inputs (batch, ...)
        # that the encoder repeats; one without takes (batch, time, ...).
        skip = 2 if self.sequence_input else 1
        shape = tuple(tensor.shape)[skip:]
        if len(tensor.shape) <= skip or any(dim is None for dim in shape):
            raise ExportError(
                "The model input must have a static feature shape"
                + (" after (batch, time)" if self.sequence_input else "")
                + f"; received {tuple(tensor.shape)}"
            )
        node = Node("input", "input", [], shape, layer="input")
        self.nodes.append(node)
        self.names[id(tensor)] = node.name
        self.timed[node.name] = self.sequence_input

    def emit(self, layer, op, inputs, shape, suffix="", **params):
        name = layer.name + suffix
        node = Node(name, op, list(inputs), tuple(shape), params, layer.name)
        self.nodes.append(node)
        self.timed[name] = self.timed[inputs[0]] if inputs else True
        return name

    # -- layer conversion ----------------------------------------------
    def convert(self, layer, names, inputs, output):
        if self.aggregate is not None and not isinstance(
            _unwrap(layer)[0], (keras.layers.Dense, keras.layers.Dropout)
        ):
            raise _unsupported(
                layer,
                "after the time-averaging readout only Dense and Dropout "
                "layers can follow",
            )
        if isinstance(layer, snn.DirectEncoding):
            return self._encoding(layer, names)
        if isinstance(layer, (snn.BernoulliEncoding, snn.PoissonEncoding)):
            raise _unsupported(
                layer,
                "stochastic encoders draw random numbers at every step, "
                "which the deployed integer runtimes do not; train with "
                "DirectEncoding (the first layer then encodes)",
            )
        self._require_time(layer, names)
        if isinstance(layer, snn.LIF):  # IF, CubaLIF, ALIF subclass LIF
            return self._neuron(layer, names, output)
        if isinstance(layer, snn.TDBatchNormalization):
            return self._batch_norm(layer, names, output)
        if isinstance(layer, snn.Decoding):
            return self._decoding(layer, names)
        if isinstance(layer, snn.Voting):
            return self._voting(layer, names, inputs)
        if isinstance(layer, snn.MembraneReadout):
            return self._membrane_readout(layer, names)
        if isinstance(layer, keras.layers.GlobalAveragePooling1D):
            return self._time_mean(layer, names)
        if isinstance(layer, keras.layers.Add):
            return self.emit(
                layer, "add", names, self._shape(layer, output, names)
            )
        inner, _ = _unwrap(layer)
        return self._synaptic(layer, inner, names, output)

    def _shape(self, layer, tensor, names):
        return _per_step_shape(layer, tensor.shape, self.timed[names[0]])

    def _require_time(self, layer, names):
        if self.aggregate is not None:
            return
        if not all(self.timed[n] for n in names):
            raise _unsupported(
                layer,
                "its input has no time axis; start the model with "
                "keras_snn.layers.DirectEncoding, or give it "
                "(batch, time, ...) inputs",
            )

    def _encoding(self, layer, names):
        node = self.nodes[-1] if self.nodes else None
        if node is None or node.op != "input" or self.encoded:
            raise _unsupported(
                layer, "the encoding layer must come right after the input"
            )
        self.encoded = True
        if self.timesteps is None:
            self.timesteps = int(layer.timesteps)
        self.timed[names[0]] = True
        return names[0]

    def _neuron(self, layer, names, output):
        if not layer.return_sequences:
            raise _unsupported(
                layer, "set return_sequences=True (the default) to export"
            )
        if getattr(layer, "go_backwards", False):
            raise _unsupported(layer, "go_backwards=True is not supported")
        return self.emit(
            layer,
            "neuron",
            names,
            self._shape(layer, output, names),
            **neuron_models.neuron_params(layer),
        )

    def _batch_norm(self, layer, names, output):
        gamma, beta, mean, variance, epsilon, scale = (
            functional.batch_norm_parameters(layer)
        )
        return self.emit(
            layer,
            "batch_norm",
            names,
            self._shape(layer, output, names),
            gamma=gamma,
            beta=beta,
            mean=mean,
            variance=variance,
            epsilon=epsilon,
            scale=float(scale),
        )

    def _dense(self, layer, names, kernel, bias, suffix=""):
        kernel = np.asarray(kernel, "float64")
        if bias is None:
            bias = np.zeros(kernel.shape[-1])
        prev = self.nodes_by_name(names[0])
        if len(prev.shape) != 1:
            raise _unsupported(
                layer,
                f"a dense layer needs a flat input (add Flatten); received "
                f"per-step shape {prev.shape}",
            )
        return self.emit(
            layer,
            "dense",
            names,
            (kernel.shape[-1],),
            suffix=suffix,
            kernel=kernel,
            bias=np.asarray(bias, "float64"),
        )

    def nodes_by_name(self, name):
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def _set_aggregate(self, layer, aggregate):
        if self.aggregate is not None:
            raise _unsupported(layer, "the model has two readout heads")
        self.aggregate = aggregate

    def _decoding(self, layer, names):
        name = self._dense(layer, names, layer.kernel, _numpy(layer.bias))
        self._set_aggregate(layer, "mean")
        return name

    def _voting(self, layer, names, inputs):
        population = layer._population_for(inputs[0].shape)
        matrix = functional.voting_matrix(
            layer.num_classes, population, "float64"
        )
        name = self._dense(layer, names, matrix.T, None)
        self._set_aggregate(layer, "mean")
        return name

    def _membrane_readout(self, layer, names):
        dense = self._dense(
            layer, names, layer.kernel, _numpy(layer.bias), suffix="_affine"
        )
        name = self.emit(
            layer,
            "integrator",
            [dense],
            self.nodes[-1].shape,
            decay=float(layer.decay),
        )
        self._set_aggregate(layer, layer.mode)
        return name

    def _time_mean(self, layer, names):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, "only data_format='channels_last'")
        self._set_aggregate(layer, "mean")
        # The mean over time commutes with the affine layers after it: the
        # step graph applies them at every step and the caller averages.
        return names[0]

    def _synaptic(self, layer, inner, names, output):
        if isinstance(inner, keras.layers.Dropout):
            return names[0]
        if getattr(inner, "activation", None) not in (
            None,
            keras.activations.linear,
        ):
            raise _unsupported(
                layer,
                "activations other than 'linear' are not spiking; use a "
                "keras_snn neuron layer after the synaptic layer",
            )
        if isinstance(inner, keras.layers.Dense):
            return self._dense(
                layer, names, _numpy(inner.kernel), _numpy(inner.bias)
            )
        if isinstance(inner, keras.layers.BatchNormalization):
            return self._batch_norm(layer, names, output)
        if isinstance(inner, keras.layers.Flatten):
            return self.emit(
                layer, "flatten", names, self._shape(layer, output, names)
            )
        if isinstance(
            inner,
            (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D),
        ):
            self._channels_last(layer, inner)
            op = (
                "avg_pool"
                if isinstance(inner, keras.layers.AveragePooling2D)
                else "max_pool"
            )
            return self.emit(
                layer,
                op,
                names,
                self._shape(layer, output, names),
                pool_size=tuple(inner.pool_size),
                strides=tuple(inner.strides),
                padding=inner.padding,
            )
        if type(inner) is keras.layers.Conv2D:
            self._channels_last(layer, inner)
            if tuple(inner.dilation_rate) != (1, 1) or inner.groups != 1:
                raise _unsupported(
                    layer, "dilated or grouped convolutions are not supported"
                )
            kernel = np.asarray(_numpy(inner.kernel), "float64")
            bias = _numpy(inner.bias)
            return self.emit(
                layer,
                "conv2d",
                names,
                self._shape(layer, output, names),
                kernel=kernel,
                bias=np.zeros(kernel.shape[-1])
                if bias is None
                else np.asarray(bias, "float64"),
                strides=tuple(inner.strides),
                padding=inner.padding,
            )
        raise _unsupported(layer)

    @staticmethod
    def _channels_last(layer, inner):
        if getattr(inner, "data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, "only data_format='channels_last'")
