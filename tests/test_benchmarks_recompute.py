"""benchmarks/recompute.py: a measured cell, a tiny record, the page.

One cell runs through its child process (working memory above zero, a
finite loss); a tiny run (conv-small, T = 1, each cell in this process to
keep the suite fast) gives a record with every cell and a page that is its
rendering; the committed page is its record's rendering and in the docs.
Times and memory are measured, not asserted.
"""

import json
import math
import pathlib

import pytest
from test_benchmarks_peers import load_script

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def test_the_child_process_reports_one_cell():
    recompute = load_script("recompute")
    args = recompute._parse(["--warmup", "0", "--repeats", "1"])[1]
    row = recompute._measure(("conv-small", 1, False, True), args)
    assert (row["workload"], row["timesteps"]) == ("conv-small", 1)
    assert (row["xla"], row["recompute"]) == (False, True)
    assert row["working_mb"] > 0 and math.isfinite(row["loss"])
    assert row["samples_per_s"] > 0
    with pytest.raises(RuntimeError, match="(?s)vgg:1:0:0 failed.*'vgg'"):
        recompute._measure(("vgg", 1, False, False), args)


def test_tiny_record_renders_to_its_page(tmp_path, capsys, monkeypatch):
    recompute = load_script("recompute")
    monkeypatch.setattr(
        recompute,
        "_measure",
        lambda cell, args: recompute.child(*cell, 0, 1),
    )
    record_path, page = tmp_path / "rc.json", tmp_path / "rc.md"
    argv = ["--plan", "conv-small:1", "--warmup", "0", "--repeats", "1"]
    record = recompute.main([*argv, "--json", str(record_path)])
    cells = {
        (r["workload"], r["timesteps"], r["xla"], r["recompute"])
        for r in record["rows"]
    }
    assert cells == set(recompute.cells({"conv-small": [1]}))
    assert len(cells) == 4
    assert json.loads(record_path.read_text()) == record
    text = capsys.readouterr().out[:-1]
    assert "| conv-small (batch 64) | 1 | no XLA |" in text
    recompute.main(["--render", str(record_path), "--page", str(page)])
    assert page.read_text() == text == recompute.render(record)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--plan", "vgg:2"], "the workload must be one of"),
        (["--plan", "resnet19:0"], "integers T >= 1"),
        (["--plan", "resnet19:two"], "e.g. resnet19:2,4"),
        (["--repeats", "0"], "'0': expected an integer >= 1"),
        (["--warmup", "-1"], "'-1': expected an integer >= 0"),
    ],
)
def test_refuses_bad_arguments(argv, message, capsys):
    recompute = load_script("recompute")
    with pytest.raises(SystemExit):
        recompute.main(argv)
    assert message in capsys.readouterr().err


def test_the_docs_page_is_the_rendering_of_its_record():
    recompute = load_script("recompute")
    record = json.loads((RESULTS / "recompute.json").read_text())
    assert (RESULTS / "recompute.md").read_text() == recompute.render(record)
    assert {r["recompute"] for r in record["rows"]} == {False, True}
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert '--8<-- "benchmarks/results/recompute.md"' in docs
