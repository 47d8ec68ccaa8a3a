"""`keras-snn doctor`: what this installation has, in one report.

```
keras-snn doctor
```

Prints the versions of Python, keras_snn (which ships edge), Keras,
TensorFlow and NumPy and of the consumers' Python packages that are installed
(ai-edge-litert, tflite-micro, onnxruntime, tf2onnx), TensorFlow's
devices, whether its oneDNN CPU kernels are on (`TF_ENABLE_ONEDNN_OPTS`)
and whether XLA compiles, and for each registered export target
(`edge.targets`) whether what it needs is there, or how to install it.
Registered with `keras-snn` through the entry point group
`keras_snn.commands` (see `setup.cfg`); building the parser imports
nothing heavy.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import platform

__all__ = ["doctor_command", "register", "report"]

# The packages whose versions are reported; the consumers' (import name,
# distribution name) only when they are installed.
CORE_PACKAGES = ("keras_snn", "keras", "tensorflow", "numpy")
CONSUMER_PACKAGES = (
    ("ai_edge_litert", "ai-edge-litert"),
    ("tflite_micro", "tflite-micro"),
    ("onnxruntime", "onnxruntime"),
    ("tf2onnx", "tf2onnx"),
)


def register(commands):
    """Adds the `doctor` subcommand to `keras-snn`'s subparsers."""
    parser = commands.add_parser(
        "doctor",
        help="print versions, devices, oneDNN/XLA state and which export "
        "targets can run",
        description=(
            "Report the versions of keras_snn and its dependencies, "
            "TensorFlow's devices, oneDNN and XLA, and for each export "
            "target whether its converter and consumer are installed."
        ),
    )
    parser.set_defaults(handler=doctor_command, imports_tensorflow=True)


def _version(module, distribution):
    """The installed version of `distribution`, or `None` if `module`
    cannot be imported (found without importing it)."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "installed, version unknown"


def _xla_state(tf):
    """Whether a small XLA-compiled function runs, and what it said."""
    try:
        double = tf.function(lambda x: 2.0 * x, jit_compile=True)
        value = float(double(tf.constant(1.0)))
    except Exception as error:  # any failure means no XLA here
        return f"unavailable ({type(error).__name__}: {error})"
    if value != 2.0:
        return f"wrong result ({value} for 2.0)"
    return "available (jit_compile=True runs)"


def _onednn_state():
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is None:
        return "TensorFlow's default (TF_ENABLE_ONEDNN_OPTS unset)"
    state = "off" if value.strip() in ("0", "false", "False") else "on"
    return f"{state} (TF_ENABLE_ONEDNN_OPTS={value})"


def _targets():
    """`(name, missing or None)` for each registered export target;
    `missing` is a string when the target does not load."""
    from edge import targets as registry

    rows = []
    for name in registry.names():
        try:
            rows.append((name, registry.get(name).missing()))
        except Exception as error:  # a broken plugin is reported, not fatal
            rows.append((name, f"does not load: {error}"))
    return rows


def report():
    """The doctor's report, as a list of lines.

    Imports TensorFlow (for its devices and XLA) and every registered
    export target's module (for its requirements).
    """
    import tensorflow as tf

    lines = ["versions:"]
    lines.append(f"  python        {platform.python_version()}")
    for module in CORE_PACKAGES:
        version = importlib.import_module(module).__version__
        lines.append(f"  {module:<13} {version}")
    lines.append("consumer packages:")
    for module, distribution in CONSUMER_PACKAGES:
        version = _version(module, distribution) or (
            f"not installed (pip install {distribution})"
        )
        lines.append(f"  {module:<15} {version}")
    lines.append("tensorflow:")
    devices = tf.config.list_physical_devices()
    lines.append(
        "  devices       "
        + ", ".join(f"{d.device_type} ({d.name})" for d in devices)
    )
    lines.append(f"  oneDNN        {_onednn_state()}")
    lines.append(f"  XLA           {_xla_state(tf)}")
    lines.append("export targets:")
    for name, missing in _targets():
        if isinstance(missing, str):
            state = missing
        elif missing:
            state = "missing " + "; ".join(missing)
        else:
            state = "ready"
        lines.append(f"  {name:<15} {state}")
    return lines


def doctor_command(args):
    """Runs `keras-snn doctor`: prints `report()`; returns its lines."""
    lines = report()
    print("\n".join(lines))
    return lines
