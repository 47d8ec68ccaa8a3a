"""The package's TensorFlow requirement: one distribution, a GPU extra.

`tensorflow-cpu` and `tensorflow` install the same `tensorflow/` files, so
the package must name only `tensorflow`: the base requirement runs on the
CPU, and the `gpu` extra adds NVIDIA's CUDA wheels through
`tensorflow[and-cuda]` over the same versions. CI installs with
`constraints.txt`, which must pin that `tensorflow` and no CUDA wheel.
"""

import configparser
import pathlib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _setup_cfg():
    parser = configparser.ConfigParser()
    assert parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser


def _requirements(text):
    return [
        Requirement(line.strip())
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _named(requirements, name):
    return [r for r in requirements if canonicalize_name(r.name) == name]


def _base():
    return _requirements(_setup_cfg()["options"]["install_requires"])


def _extra(name):
    # configparser expands the %(other)s references between extras.
    return _requirements(_setup_cfg()["options.extras_require"][name])


def _constraints():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def test_base_requires_tensorflow_on_every_platform():
    base = _base()
    assert not _named(base, "tensorflow-cpu")
    tensorflow = _named(base, "tensorflow")
    assert len(tensorflow) == 1, tensorflow
    assert tensorflow[0].marker is None, tensorflow[0]
    assert not tensorflow[0].extras, tensorflow[0]


def test_no_extra_names_tensorflow_cpu():
    extras = _setup_cfg()["options.extras_require"]
    for name in extras:
        assert not _named(_extra(name), "tensorflow-cpu"), name


def test_gpu_extra_is_tensorflow_and_cuda_on_linux():
    gpu = _extra("gpu")
    tensorflow = _named(gpu, "tensorflow")
    assert len(tensorflow) == 1, gpu
    assert tensorflow[0].extras == {"and-cuda"}, tensorflow[0]
    marker = tensorflow[0].marker
    assert marker is not None
    assert marker.evaluate({"sys_platform": "linux"})
    assert not marker.evaluate({"sys_platform": "darwin"})
    assert not marker.evaluate({"sys_platform": "win32"})


def test_gpu_and_base_allow_the_same_tensorflow_versions():
    (base,) = _named(_base(), "tensorflow")
    (gpu,) = _named(_extra("gpu"), "tensorflow")
    assert base.specifier == gpu.specifier
    assert str(base.specifier)  # a range, not any version


def test_ci_extras_do_not_pull_the_gpu_build():
    # CI installs ".[test]"; "all" is what a user takes for everything on
    # the CPU. Neither may bring the CUDA wheels in.
    for name in ("test", "all", "dev"):
        for requirement in _named(_extra(name), "tensorflow"):
            assert "and-cuda" not in requirement.extras, name


def test_constraints_pin_tensorflow_inside_the_range_and_no_cuda():
    pins = _constraints()
    assert "tensorflow-cpu" not in pins
    nvidia = [name for name in pins if name.startswith("nvidia")]
    assert not nvidia, nvidia
    tensorflow = pins["tensorflow"]
    (pinned,) = tensorflow.specifier
    assert pinned.operator == "==", tensorflow
    (base,) = _named(_base(), "tensorflow")
    assert base.specifier.contains(pinned.version), (tensorflow, base)
