"""The `"nir"` target of `edge.export`: a NIR graph run in Norse/snnTorch.

The consumers run in their own environment (`.venv-nir`, made by
`.ci/install_nir.sh`; see `edge.nir_export`). Registered under the entry
point group `edge.targets`.
"""

from edge.errors import ConsumerError
from edge.targets import Requirement
from edge.targets import Target

__all__ = ["TARGET", "export_target"]


def export_target(context):
    """The `"nir"` target (`edge.nir_export.export_target`)."""
    from edge import nir_export

    return nir_export.export_target(context)


def _consumers_available():
    from edge import nir_export

    try:
        nir_export.nir_python()
    except ConsumerError:
        return False
    return True


TARGET = Target(
    "nir",
    export_target,
    requirements=(
        Requirement.module("nir", "pip install nir"),
        Requirement(
            "the NIR consumers' environment (.venv-nir or "
            "$KERAS_SNN_NIR_PYTHON)",
            _consumers_available,
            "run .ci/install_nir.sh",
        ),
    ),
    description="model.nir (Norse, snnTorch)",
)
