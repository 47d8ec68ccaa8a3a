"""benchmarks/memory.py: the fitted line, a tiny measured record, the page.

The least-squares line recovers an exact line; a tiny run (T = 1 and 2,
one sub-batch, each measurement in this process instead of its own to
keep the suite fast; one measurement through its child process, whose
working memory is above zero) gives a record with every configuration,
an inference rate, and a page that is its rendering; the committed page is
its record's rendering and in the docs. Memory and times are not
asserted beyond being measured.
"""

import json
import math
import pathlib

import pytest
from test_benchmarks_peers import load_script

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load_memory():
    return load_script("memory")


def test_fit_line_recovers_a_line():
    memory = load_memory()
    a, b = memory.fit_line([1, 4, 8, 16], [100 + 30 * t for t in (1, 4, 8, 16)])
    assert a == pytest.approx(100) and b == pytest.approx(30)
    assert memory.fit_line([4, 4], [10, 20]) == (15, 0.0)


def test_the_child_process_reports_one_measurement():
    memory = load_memory()
    args = memory._parse(["--steps", "1", "--repeats", "1"])[1]
    row = memory._measure(("train", 1, 0), args)
    assert (row["mode"], row["timesteps"], row["option"]) == ("train", 1, 0)
    assert row["working_mb"] > 0 and math.isfinite(row["loss"])
    with pytest.raises(RuntimeError, match="(?s)fit:1:0 failed.*mode 'fit'"):
        memory._measure(("fit", 1, 0), args)


def test_tiny_record_renders_to_its_page(tmp_path, capsys, monkeypatch):
    memory = load_memory()
    monkeypatch.setattr(
        memory, "_measure", lambda spec, args: memory.child(*spec, 1, 1)
    )
    record_path, page = tmp_path / "memory.json", tmp_path / "memory.md"
    argv = ["--timesteps", "1", "2", "--sub-batches", "128", "--steps", "1"]
    argv += ["--repeats", "1", "--json", str(record_path)]
    record = memory.main([*argv, "--page", str(page)])
    keys = {(r["mode"], r["timesteps"], r["option"]) for r in record["rows"]}
    assert keys == {
        (mode, t, option)
        for mode, option in (("train", 1), ("train", 0), ("infer", 128))
        for t in (1, 2)
    }
    # In this process the peak may predate the test (an earlier test's):
    # only the child process's measurement (above) must be positive.
    assert all(math.isfinite(r["working_mb"]) for r in record["rows"])
    assert all(
        r["samples_per_s"] > 0 for r in record["rows"] if r["mode"] == "infer"
    )
    assert json.loads(record_path.read_text()) == record
    text = page.read_text()
    assert text == capsys.readouterr().out[:-1]
    assert "| infer, sub-batch 128 |" in text and "| train, XLA |" in text
    again = tmp_path / "again.md"
    memory.main(["--render", str(record_path), "--page", str(again)])
    assert again.read_text() == text
    for bad in (["--timesteps", "4"], ["--sub-batches", "0"]):
        with pytest.raises(SystemExit):
            memory.main(bad)
    err = capsys.readouterr().err
    assert "two different T" in err and "expected an integer >= 1" in err


def test_the_docs_page_is_the_rendering_of_its_record():
    memory = load_memory()
    record = json.loads((RESULTS / "memory.json").read_text())
    assert (RESULTS / "memory.md").read_text() == memory.render(record)
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert '--8<-- "benchmarks/results/memory.md"' in docs
