"""benchmarks/peers.py and its PyTorch peers, on tiny sizes.

The ratios of the report are taken against the fastest peer, whichever it
is (Norse among them); each peer script runs its conv-small in the peers'
environment (`benchmarks/install_peers.sh`, `.venv-peers`) and reports a
finite loss and throughputs; a measurement written with `--json` renders
(`--render`) to the very page that the run printed, and the docs' page is
the rendering of the record committed beside it. Speeds are not asserted.
"""

import importlib.util
import json
import math
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
TINY = [
    "--batch",
    "8",
    "--infer-batch",
    "16",
    "--warmup",
    "1",
    "--repeats",
    "5",
    "--rounds",
    "1",
]


def load_script(name):
    """The module of `benchmarks/<name>.py` (its folder on `sys.path`, for
    the modules beside it)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    path = BENCHMARKS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_peers():
    return load_script("peers")


@pytest.fixture(scope="module")
def peers_python():
    if not PEERS_PYTHON.exists():
        message = (
            f"{PEERS_PYTHON.relative_to(ROOT)} is missing: run "
            "benchmarks/install_peers.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(PEERS_PYTHON)


def _result(library, train, infer, peak, imported):
    return {
        "library": library,
        "version": f"{library} 1.0",
        "train_samples_per_s": train,
        "infer_samples_per_s": infer,
        "train_cpu_samples_per_s": train * 1.5,
        "infer_cpu_samples_per_s": infer * 1.5,
        "peak_rss_mb": peak,
        "import_rss_mb": imported,
    }


def _record(runs):
    libraries = list(dict.fromkeys(lib for lib, _ in runs))
    return {
        "workload": "conv-small",
        "command": "python benchmarks/peers.py --timesteps 4",
        "started": "2026-12-04 15:00 UTC",
        "wall_s": 100.0,
        "machine": "x86_64",
        "nproc": 2,
        "python": "3.11.7",
        "threads": 2,
        "settings": {
            "timesteps": [4],
            "libraries": libraries,
            "batch": 64,
            "infer_batch": 256,
            "warmup": 3,
            "repeats": 7,
            "rounds": 2,
        },
        "runs": [
            {"library": lib, "timesteps": t, "runs": rs}
            for (lib, t), rs in runs.items()
        ],
    }


def test_ratios_are_to_the_fastest_and_the_lowest_peer():
    peers = load_peers()
    runs = {
        ("keras-snn", 4): [
            _result("keras-snn", 600, 2000, 1000, 600),
            _result("keras-snn", 700, 2400, 1100, 600),  # best round
        ],
        ("snntorch", 4): [_result("snntorch", 200, 500, 900, 220)],
        ("norse", 4): [_result("norse", 350, 800, 950, 230)],
        ("spikingjelly", 4): [{"error": "exit 1: boom", "stderr_tail": "boom"}],
    }
    page = peers.render(_record(runs))
    wall_clock = page[: page.index("The same runs")]  # the first table
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in wall_clock.splitlines()
        if line.startswith("| ") and "samples/s" not in line
    }
    # Against the fastest peer (Norse) in speed and the lowest in memory
    # (snnTorch: 900 MB peak, 680 MB working), from each one's best round.
    keras = rows["keras-snn"]
    assert keras[:3] == ["4", "700", f"{700 / 350:.2f}"]
    assert keras[3:5] == ["2400", f"{2400 / 800:.2f}"]
    assert keras[5:9] == [
        "1000",
        f"{1000 / 900:.2f}",
        "400",
        f"{400 / 680:.2f}",
    ]
    assert (
        rows["Norse"][2] == "1.00" and rows["snnTorch"][2] == f"{200 / 350:.2f}"
    )
    assert rows["SpikingJelly"][1] == "exit 1: boom"
    assert "- norse 1.0" in page and "SpikingJelly T=4 failed:" in page
    assert "`python benchmarks/peers.py --timesteps 4`" in page


def test_bfloat16_rows_are_compared_with_the_bfloat16_peers():
    peers = load_peers()

    def result(library, train, train_peak):
        r = _result(library, train, 2 * train, 1000, 200)
        return {**r, "train_peak_rss_mb": train_peak}

    runs = {
        ("keras-snn", 4): [result("keras-snn", 300, 700)],
        ("snntorch", 4): [result("snntorch", 100, 500)],
        ("keras-snn-bf16", 4): [result("keras-snn-bf16", 600, 600)],
        ("snntorch-bf16", 4): [result("snntorch-bf16", 400, 400)],
        ("spikingjelly-bf16", 4): [result("spikingjelly-bf16", 200, 450)],
    }
    page = peers.render(_record(runs))
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in page[: page.index("The same runs")].splitlines()
        if line.startswith("| ") and "samples/s" not in line
    }
    # float32 against snnTorch (100), bfloat16 against snnTorch bf16 (400).
    assert rows["keras-snn"][2] == "3.00"
    assert rows["keras-snn, mixed_bfloat16, jit_compile=False"][2] == "1.50"
    assert rows["SpikingJelly, bfloat16 autocast"][2] == "0.50"
    # Training memory: against the lower peer of the same precision.
    table = page.split("training working MB")[1].split("\n\n")[0]
    assert "| keras-snn | 4 | 500 | 1.67 |" in table
    bf16 = "| keras-snn, mixed_bfloat16, jit_compile=False | 4 | 400 | 2.00 |"
    assert bf16 in table


def test_training_memory_table_when_the_record_keeps_it():
    peers = load_peers()

    def result(library, peak, train_peak, imported):
        r = _result(library, 100, 100, peak, imported)
        return {**r, "train_peak_rss_mb": train_peak}

    runs = {
        ("keras-snn", 4): [result("keras-snn", 1500, 900, 600)],
        ("snntorch", 4): [result("snntorch", 800, 700, 220)],
        ("norse", 4): [result("norse", 900, 750, 230)],
    }
    page = peers.render(_record(runs))
    table = page.split("training working MB")[1].split("\n\n")[0]
    # keras-snn 300 MB against snnTorch's 480 MB, the lower peer.
    assert f"| keras-snn | 4 | 300 | {300 / 480:.2f} |" in table
    assert "| Norse | 4 | 520 | " in table
    # Records made before the field existed render as before.
    for rs in runs.values():
        del rs[0]["train_peak_rss_mb"]
    assert "training working MB" not in peers.render(_record(runs))


def _keras_parameters(workload):
    """Trainable parameters of keras-snn's network of `workload`."""
    import numpy as np

    model = load_peers().keras_model("keras-snn", 2, workload)
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "library, workload",
    [
        ("snntorch", "conv-small"),
        ("spikingjelly", "conv-small"),
        ("norse", "conv-small"),
        ("snntorch", "resnet19"),
        ("spikingjelly", "resnet19"),
        ("snntorch-bf16", "conv-small"),
    ],
)
def test_each_peer_trains_and_infers_the_same_network(
    library, workload, peers_python
):
    peers = load_peers()
    sizes = (
        ["--batch", "2", "--infer-batch", "2"] if workload == "resnet19" else []
    )
    _, args = peers._parse(
        ["--workload", workload, *TINY, *sizes, "--peers-python", peers_python]
    )
    result = peers._run(library, 1 if workload == "resnet19" else 2, args)
    assert "error" not in result, result.get("stderr_tail")
    assert result["library"] == library
    assert library.removesuffix("-bf16") in result["version"]
    assert result["precision"] == (
        "bfloat16" if library.endswith("-bf16") else "float32"
    )
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert (
        result["train_samples_per_s"] > 0 and result["infer_samples_per_s"] > 0
    )
    assert len(result["train_step_s"]) == 5
    assert 0 < result["import_rss_mb"] < result["peak_rss_mb"]
    assert result["import_rss_mb"] < result["train_peak_rss_mb"]
    assert result["train_peak_rss_mb"] <= result["peak_rss_mb"]
    # The same layers and widths as keras-snn's network (824,650 and
    # 14,666,890 trainable parameters).
    assert result["parameters"] == _keras_parameters(workload)


def test_the_bfloat16_keras_child_trains_under_mixed_bfloat16():
    peers = load_peers()
    _, args = peers._parse(TINY)
    result = peers._run("keras-snn-bf16", 2, args)
    assert "error" not in result, result.get("stderr_tail")
    assert result["precision"] == "mixed_bfloat16"
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert result["parameters"] == _keras_parameters("conv-small")


def test_workload_defaults_and_refusals(capsys):
    peers = load_peers()
    _, args = peers._parse(["--workload", "resnet19"])
    # float32: keras-snn with and without XLA and the two peers that
    # build ResNet-19; then each of the three in bfloat16.
    float32, bf16 = args.libraries[:4], args.libraries[4:]
    assert float32[:2] == ["keras-snn", "keras-snn-noxla"]
    assert float32[2:] == ["snntorch", "spikingjelly"]
    assert bf16 == [f"{lib}-bf16" for lib in float32 if "noxla" not in lib]
    assert (args.timesteps, args.batch, args.infer_batch) == ([2, 4], 32, 64)
    _, args = peers._parse([])
    assert "norse" in args.libraries and args.timesteps == [4, 8]
    assert not [lib for lib in args.libraries if lib.endswith("-bf16")]
    for argv, message in (
        (["--workload", "resnet19", "--libraries", "norse"], "not measured on"),
        (["--repeats", "3"], "at least 5"),
        (["--timesteps", "0"], ">= 1"),
    ):
        with pytest.raises(SystemExit):
            peers._parse(argv)
        assert message in capsys.readouterr().err


def test_the_report_renders_again_from_its_record(
    tmp_path, capsys, peers_python
):
    peers = load_peers()
    record_path, page = tmp_path / "peers.json", tmp_path / "page.md"
    argv = [
        "--libraries",
        "keras-snn",
        "norse",
        "--timesteps",
        "2",
        *TINY,
        "--peers-python",
        peers_python,
        "--json",
        str(record_path),
        "--page",
        str(page),
    ]
    record = peers.main(argv)
    printed = capsys.readouterr().out
    assert json.loads(record_path.read_text()) == record
    assert page.read_text() == printed[:-1]  # print adds a newline
    for run in record["runs"]:
        assert "error" not in run["runs"][0], run["runs"][0].get("stderr_tail")
        assert run["runs"][0]["train_peak_rss_mb"] > 0
    assert "| keras-snn | 2 |" in page.read_text().split("training working")[1]
    again = tmp_path / "again.md"
    peers.main(["--render", str(record_path), "--page", str(again)])
    assert again.read_text() == page.read_text()
    with pytest.raises(SystemExit):
        peers.main(["--render", str(tmp_path / "missing.json")])
    assert "--render" in capsys.readouterr().err


def test_the_docs_tables_are_the_pages_of_their_records():
    peers = load_peers()
    results = BENCHMARKS / "results"
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    for workload in ("conv_small", "resnet19"):
        record = json.loads((results / f"peers_{workload}.json").read_text())
        page = results / f"peers_{workload}.md"
        assert page.read_text() == peers.render(record)
        assert f'--8<-- "benchmarks/results/peers_{workload}.md"' in docs
        assert record["command"] in page.read_text()
