"""The `"loihi"` target of `edge.export`: a lava-dl NetX file for Loihi 2.

Checked spike for spike in Lava's bit-accurate simulator, which runs in
its own environment (`.venv-lava`, made by `.ci/install_lava.sh`; see
`edge.loihi`). Registered under the entry point group `edge.targets`.
"""

from edge.targets import Requirement
from edge.targets import Target

__all__ = ["TARGET", "export_target"]


def export_target(context):
    """The `"loihi"` target (`edge.loihi.export_target`)."""
    from edge import loihi

    return loihi.export_target(context)


def _lava_available():
    from edge import loihi

    return loihi.lava_python() is not None


TARGET = Target(
    "loihi",
    export_target,
    requirements=(
        Requirement.module("h5py", "pip install h5py"),
        Requirement(
            "the Lava environment (.venv-lava or $KERAS_SNN_LAVA_PYTHON)",
            _lava_available,
            "run .ci/install_lava.sh",
        ),
    ),
    description="model_loihi.net (Lava fixed_pt)",
)
