"""benchmarks/profile_step.py: the categories and a tiny profile.

An op goes into the category its type and name scope say; a profiled
step of a small conv-small is split into categories that sum to the step,
with its convolutions, neurons and normalization all present; the record
renders to the page the run wrote, and the docs' page is the rendering of
the record committed beside it. Times are not asserted.
"""

import json
import pathlib

import pytest
from test_benchmarks_peers import load_script

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def load_profile():
    return load_script("profile_step")


@pytest.mark.parametrize(
    "op_type, name, expected",
    [
        ("IDLE", "IDLE", "threads idle"),
        ("CheckNumerics", "functional_1/lif_1/CheckNumerics", "NaN guard"),
        ("Mul", "adam/Mul_3", "optimizer"),
        ("AssignSubVariableOp", "AssignSubVariableOp_2", "optimizer"),
        (
            "_MklNativeConv2DBackpropInput",
            "gradient_tape/functional_1/time_folded_3_1/conv2d_1_1/x",
            "convolution, backward",
        ),
        (
            "_MklNativeFusedConv2D",
            "functional_1/t/conv2d/BiasAdd",
            "convolution, forward",
        ),
        ("_MklMatMul", "gradient_tape/functional_1/t/dense_1/MatMul", "dense"),
        (
            "_MklNativeAvgPoolGrad",
            "gradient_tape/f/pool/AvgPoolGrad",
            "pooling",
        ),
        ("Pack", "functional_1/lif_1/stack", "stacking and copies"),
        ("Mul", "functional_1/lif_1/mul", "neuron"),
        ("Sub", "functional_1/stage1_block1_0_lif/sub", "neuron"),
        (
            "Mean",
            "functional_1/t/batch_normalization_1/moments/mean",
            "normalization",
        ),
        (
            "SquaredDifference",
            "functional_1/conv1_tdbn/SquaredDifference",
            "normalization",
        ),
        ("Less", "Less_4", "other"),
        (
            "Mean",
            "spiking_resnet19_1/stage1_block1_shortcut_tdbn_1/moments/mean",
            "normalization",
        ),
        ("Cast", "ArithmeticOptimizer/ReorderCastLike_float_Cast_21", "other"),
    ],
)
def test_categories(op_type, name, expected):
    assert load_profile().category(op_type, name) == expected


def test_the_ops_beyond_the_listed_ones_are_counted():
    profile = load_profile()
    cols = ["rank", "type", "operation", "total_self_time"]
    cols.append("host_total_self_time_percent")
    listed = [
        ("Conv2DBackpropInput", "gradient_tape/f/conv2d/x", 600.0),
        ("Mul", "f/lif/mul", 300.0),
        ("IDLE", "IDLE", 100.0),
    ]
    table = {
        "cols": [{"id": c} for c in cols],
        "rows": [  # each op's share of all ops' 2000 us
            {"c": [{"v": i}, {"v": t}, {"v": n}, {"v": us}, {"v": us / 2000}]}
            for i, (t, n, us) in enumerate(listed)
        ],
    }
    rows, total_us = profile.op_table(json.dumps([table, table]))
    assert rows == listed and total_us == pytest.approx(2000.0)
    ms = profile.categorize(rows, total_us, steps=2)
    assert ms["convolution, backward"] == pytest.approx(0.3)
    assert ms["neuron"] == pytest.approx(0.15)
    assert ms["threads idle"] == pytest.approx(0.05)
    assert ms["smaller ops"] == pytest.approx(0.5)  # 1000 us not listed
    assert sum(ms.values()) == pytest.approx(1.0)


def test_tiny_profile_renders_from_its_record(tmp_path, capsys):
    profile = load_profile()
    record_path, page = tmp_path / "profile.json", tmp_path / "page.md"
    record = profile.main(
        [
            "--runs",
            "conv-small:2",
            "--warmup",
            "1",
            "--steps",
            "1",
            "--batch",
            "4",
            "--json",
            str(record_path),
            "--page",
            str(page),
        ]
    )
    (row,) = record["rows"]
    assert set(row["ms"]) == set(profile.CATEGORIES)
    assert row["step_ms"] == pytest.approx(sum(row["ms"].values()))
    for name in ("convolution, forward", "convolution, backward", "neuron"):
        assert row["ms"][name] > 0, name
    assert row["ms"]["normalization"] > 0 and row["ms"]["dense"] > 0
    assert json.loads(record_path.read_text()) == record
    assert page.read_text() == capsys.readouterr().out[:-1]
    again = tmp_path / "again.md"
    profile.main(["--render", str(record_path), "--page", str(again)])
    assert again.read_text() == page.read_text()
    with pytest.raises(SystemExit):
        profile.main(["--runs", "conv-big:4"])
    assert "WORKLOAD:T" in capsys.readouterr().err


def test_the_docs_page_is_the_rendering_of_its_record():
    profile = load_profile()
    results = BENCHMARKS / "results"
    record = json.loads((results / "profile_step.json").read_text())
    page = (results / "profile_step.md").read_text()
    assert page == profile.render(record)
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert '--8<-- "benchmarks/results/profile_step.md"' in docs
