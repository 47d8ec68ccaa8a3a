"""A TFLite flatbuffer written tensor by tensor (the integer model's).

`Writer` holds a `ModelT` of TensorFlow's generated schema
(`tensorflow.lite.python.schema_py_generated`) and adds tensors (quantized
with zero point 0, or constants) and builtin operators to its one
subgraph; `finish` packs it with a `serving_default` signature. The
integer step model (`edge.targets.tflite.integer_model`) is written with
it, so that every tensor declares the scale of the integer reference.
"""

import numpy as np

from edge.targets.tflite.converter import _schema

__all__ = ["Writer"]


class Writer:
    """A TFLite model under construction: tensors, buffers, operators."""

    def __init__(self, name):
        schema = self.schema = _schema()
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = b"keras_snn integer step model (16x8)"
        self.model.buffers = [schema.BufferT()]
        self.model.operatorCodes = []
        self.graph = schema.SubGraphT()
        self.graph.name = name.encode()
        self.graph.tensors = []
        self.graph.operators = []
        self.codes = {}

    def tensor(self, name, shape, dtype, scale=None, data=None, axis=0):
        """Adds a tensor; `scale` (a number or one per channel of `axis`)
        makes it quantized with zero point 0, `data` a constant."""
        schema = self.schema
        types = {
            "int8": schema.TensorType.INT8,
            "int16": schema.TensorType.INT16,
            "int32": schema.TensorType.INT32,
            "int64": schema.TensorType.INT64,
            "bool": schema.TensorType.BOOL,
        }
        tensor = schema.TensorT()
        tensor.name = name.encode()
        tensor.shape = [int(d) for d in shape]
        tensor.type = types[dtype]
        tensor.buffer = 0
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(scale)]
            quantization = schema.QuantizationParametersT()
            quantization.scale = scales
            quantization.zeroPoint = [0] * len(scales)
            quantization.quantizedDimension = axis
            tensor.quantization = quantization
        if data is not None:
            buffer = schema.BufferT()
            array = np.ascontiguousarray(np.asarray(data).astype(dtype))
            buffer.data = array.tobytes()
            self.model.buffers.append(buffer)
            tensor.buffer = len(self.model.buffers) - 1
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def op(self, name, inputs, outputs, options=None):
        """Adds an operator `name` (a `BuiltinOperator` member); `options`
        is `(OptionsT instance)` whose class names its union type."""
        schema = self.schema
        code = getattr(schema.BuiltinOperator, name)
        if code not in self.codes:
            entry = schema.OperatorCodeT()
            entry.builtinCode = code
            entry.deprecatedBuiltinCode = min(code, 127)
            entry.version = 1
            self.model.operatorCodes.append(entry)
            self.codes[code] = len(self.model.operatorCodes) - 1
        operator = schema.OperatorT()
        operator.opcodeIndex = self.codes[code]
        operator.inputs = list(inputs)
        operator.outputs = list(outputs)
        if options is not None:
            union = type(options).__name__[: -len("T")]
            operator.builtinOptionsType = getattr(schema.BuiltinOptions, union)
            operator.builtinOptions = options
        self.graph.operators.append(operator)

    def options(self, name, **values):
        """A `<name>OptionsT` with the given fields."""
        options = getattr(self.schema, f"{name}OptionsT")()
        for key, value in values.items():
            setattr(options, key, value)
        return options

    def finish(self, inputs, outputs):
        """The flatbuffer, with a signature naming `inputs` and `outputs`
        (lists of `(name, tensor)`; a tensor may carry several names)."""
        import flatbuffers

        schema = self.schema
        self.graph.inputs = [index for _, index in inputs]
        self.graph.outputs = list(dict.fromkeys(i for _, i in outputs))
        self.model.subgraphs = [self.graph]

        def entries(pairs):
            result = []
            for name, index in pairs:
                entry = schema.TensorMapT()
                entry.name = name.encode()
                entry.tensorIndex = index
                result.append(entry)
            return result

        signature = schema.SignatureDefT()
        signature.signatureKey = b"serving_default"
        signature.subgraphIndex = 0
        signature.inputs = entries(inputs)
        signature.outputs = entries(outputs)
        self.model.signatureDefs = [signature]
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
