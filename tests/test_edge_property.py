"""Property-based differential tests of the exporter.

Hypothesis draws small random keras_snn networks (`edge.fuzz.draw_spec`:
dense and conv layers with strides and paddings, LIF/IF, hard/soft reset,
thresholds and decays, BN/tdBN, pooling, residual blocks, every readout
head, T from 1 to 8), and each one is exported to every target and run in
every consumer by `edge.fuzz.check_network`'s own driver loops (not the
exporter's self-check). The seed set is fixed (`derandomize=True`), so CI
runs the same few networks every time; `python -m edge.fuzz --networks
300` is the long run.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import example
from hypothesis import given
from hypothesis import note
from hypothesis import settings
from hypothesis import strategies as st

from edge import fuse
from edge import fuzz
from edge import ir
from edge import reference

FIXED = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow],
}
CI_NETWORKS = 8  # networks run in every consumer in each CI run


@st.composite
def specs(draw):
    return fuzz.draw_spec(fuzz.HypothesisChooser(draw))


@pytest.fixture(scope="module")
def targets():
    found = fuzz.available_targets()
    missing = [t for t in fuzz.CONSUMER_TARGETS if t not in found]
    if missing and os.environ.get("CI"):
        pytest.fail(
            f"Consumers missing in CI: {missing}; run .ci/install_arm.sh "
            "and keras-snn consumers install --targets loihi,nir"
        )
    return found


def _data(spec, samples=8):
    calibration = fuzz.inputs_for(spec, 32, spec["seed"])
    return calibration, fuzz.inputs_for(spec, samples, spec["seed"] + 1)


# -- the generator ---------------------------------------------------------
@settings(max_examples=30, **FIXED)
@given(spec=specs())
def test_drawn_networks_fire_and_fuse_to_the_keras_output(spec):
    note(repr(spec))
    model = fuzz.build(spec)
    calibration, x = _data(spec)
    rates = fuzz.firing_rates(model, calibration)
    # Every spiking layer fires, none fires at every step (the weights
    # were scaled for it); a silent network would check nothing.
    assert all(0.0 < rate < 1.0 for rate in rates.values()), rates
    graph = fuse.fuse(ir.extract(model))
    sequence = spec["input"] == "sequence"  # T is the input's time axis
    assert graph.timesteps == (None if sequence else spec["timesteps"])
    np.testing.assert_allclose(
        reference.run_float(graph, x),
        model.predict(x, verbose=0),
        rtol=1e-4,
        atol=1e-4,
    )


def test_the_generator_covers_every_construct():
    rng = np.random.default_rng(0)
    drawn = [fuzz.draw_spec(fuzz.RandomChooser(rng)) for _ in range(200)]
    heads = {spec["head"] for spec in drawn}
    blocks = [block for spec in drawn for block in spec["blocks"]]
    neurons = [b["neuron"] for b in blocks if b["kind"] != "residual"]
    assert heads == set(fuzz.HEADS)
    assert {spec["input"] for spec in drawn} == {
        "image",
        "features",
        "sequence",
    }
    assert {spec["chain"] for spec in drawn} == {False, True}
    dense = [b for b in blocks if b["kind"] == "dense"]
    assert {b["norm"] for b in dense} == {"none", "bn", "tdbn"}
    outliers = {b["outlier"] for b in blocks if b["kind"] != "residual"}
    assert outliers == set(fuzz.OUTLIERS)
    assert {spec["timesteps"] for spec in drawn} == set(range(1, 9))
    assert {b["kind"] for b in blocks} == {"conv", "residual", "dense"}
    convs = [b for b in blocks if b["kind"] == "conv"]
    assert {(b["strides"], b["padding"]) for b in convs} == {
        (1, "same"),
        (1, "valid"),
        (2, "same"),
        (2, "valid"),
    }
    assert {b["pool"] for b in convs} == {"none", "avg", "max"}
    assert {b["norm"] for b in convs} == {"none", "bn", "tdbn"}
    assert {(n["type"], n["reset"]) for n in neurons} == {
        ("LIF", "hard"),
        ("LIF", "soft"),
        ("IF", "hard"),
        ("IF", "soft"),
    }


# -- every consumer against its reference ----------------------------------
def _hard(kind, threshold, decay=1.0):
    return {
        "type": kind,
        "threshold": threshold,
        "decay": decay,
        "reset": "hard",
    }


# A convolutional chain that every target accepts, NIR and Loihi included
# (the drawn chains of the fixed seed set are dense).
CONV_CHAIN = {
    "timesteps": 4,
    "input": "image",
    "seed": 7,
    "chain": True,
    "shape": [6, 6, 1],
    "blocks": [
        {
            "kind": "conv",
            "filters": 4,
            "kernel": 3,
            "strides": 1,
            "padding": "same",
            "use_bias": True,
            "outlier": 0.0,
            "norm": "bn",
            "neuron": _hard("LIF", 0.5, 0.6),
            "pool": "avg",
            "pool_padding": "valid",
        },
        {
            "kind": "conv",
            "filters": 3,
            "kernel": 3,
            "strides": 2,
            "padding": "same",
            "use_bias": False,
            "outlier": -20.0,
            "norm": "tdbn",
            "neuron": _hard("IF", 0.7),
            "pool": "none",
            "pool_padding": "valid",
        },
        {
            "kind": "dense",
            "units": 8,
            "norm": "none",
            "outlier": 20.0,
            "neuron": _hard("LIF", 0.4, 0.8),
        },
    ],
    "head": "voting",
    "classes": 3,
    "head_neuron": _hard("LIF", 0.3, 0.9),
}


@settings(
    max_examples=CI_NETWORKS,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking
    **FIXED,
)
@given(spec=specs())
@example(spec=CONV_CHAIN)
def test_every_consumer_equals_its_reference(spec, targets):
    note(repr(spec))
    model = fuzz.build(spec)
    calibration, x = _data(spec)
    outcomes = fuzz.check_network(model, calibration, x, targets)
    assert [o.target for o in outcomes] == targets
    for outcome in outcomes:
        note(f"{outcome.target}: {outcome.status} {outcome.detail}")
    failed = [o for o in outcomes if o.status in ("mismatched", "crashed")]
    assert not failed, failed
    names = [layer.name for layer in model.layers] + [model.name]
    for outcome in outcomes:
        if outcome.status == "refused":  # names the layer (or the model)
            assert any(f"'{name}'" in outcome.detail for name in names), outcome
    # The float targets take every drawn network.
    status = {o.target: o.status for o in outcomes}
    for target in ("tflite-float32", "onnx"):
        if target in targets:
            assert status[target] == "exact", (target, status[target])
    # LiteRT and TFLite-Micro run one integer model: both take it or
    # both refuse it.
    if {"tflite-int16x8", "tflm"} <= set(targets):
        assert status["tflite-int16x8"] == status["tflm"], status


def test_the_check_has_teeth(monkeypatch, targets):
    # A consumer that computes something else is a mismatch, not a pass:
    # the ONNX step model of a graph whose first threshold is doubled.
    from edge.targets.onnx import converter as onnx_export

    rng = np.random.default_rng(3)
    spec = fuzz.draw_spec(fuzz.RandomChooser(rng))
    model = fuzz.build(spec)
    calibration, x = _data(spec)
    convert = onnx_export.convert

    def wrong(graph):
        nodes = list(graph.nodes)
        for i, node in enumerate(nodes):
            if node.op == "neuron":
                params = dict(node.params)
                params["threshold"] = 2 * params["threshold"]
                nodes[i] = dataclasses.replace(node, params=params)
                break
        return convert(graph.replace(nodes))

    monkeypatch.setattr(onnx_export, "convert", wrong)
    outcomes = fuzz.check_network(model, calibration, x, ["onnx"])
    assert outcomes[0].status == "mismatched", outcomes


def test_the_integer_check_has_teeth(monkeypatch, targets):
    # An integer model whose first threshold is doubled is a mismatch in
    # LiteRT and in TFLite-Micro.
    if "tflm" not in targets:
        pytest.skip("TFLite-Micro is not installed")
    from edge.targets.tflite import integer_model

    rng = np.random.default_rng(3)
    spec = fuzz.draw_spec(fuzz.RandomChooser(rng))
    model = fuzz.build(spec)
    calibration, x = _data(spec)
    build = integer_model.build_integer_model

    def wrong(qgraph):
        nodes = list(qgraph.graph.nodes)
        for i, node in enumerate(nodes):
            if node.op == "neuron":
                params = dict(node.params)
                params["threshold_q"] = 2 * params["threshold_q"]
                nodes[i] = dataclasses.replace(node, params=params)
                break
        graph = qgraph.graph.replace(nodes)
        return build(dataclasses.replace(qgraph, graph=graph))

    monkeypatch.setattr(integer_model, "build_integer_model", wrong)
    outcomes = fuzz.check_network(
        model, calibration, x, ["tflite-int16x8", "tflm"]
    )
    assert [o.status for o in outcomes] == ["mismatched"] * 2, outcomes


# -- the long run ----------------------------------------------------------
def test_long_run_command_prints_the_summary_table(capsys, tmp_path):
    path = tmp_path / "outcomes.json"
    argv = ["--networks", "2", "--seed", "1", "--targets", "onnx"]
    status = fuzz.main([*argv, "--json", str(path)])
    out = capsys.readouterr().out
    assert status == 0
    saved = json.loads(path.read_text())
    assert [len(item["outcomes"]) for item in saved] == [1, 1]
    assert saved[0]["outcomes"][0]["status"] == "exact"
    assert saved[0]["spec"] != saved[1]["spec"]
    assert "2 networks, seed 1" in out
    header, _, row = out.strip().splitlines()[-3:]
    assert header.split() == [
        "target",
        "networks",
        "exported",
        "refused",
        "exact",
        "mismatched",
        "crashed",
        "s/net",
    ]
    assert row.split()[:7] == ["onnx", "2", "2", "0", "2", "0", "0"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--networks", "0"], "--networks must be >= 1. Received: 0"),
        (["--targets", "tflite,gpu"], "--targets: unknown gpu"),
    ],
)
def test_long_run_command_refuses_bad_arguments(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        fuzz.main(argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err
