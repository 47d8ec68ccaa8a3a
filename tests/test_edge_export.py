"""edge targets: TFLite float32 (LiteRT) and integer 16x8 (LiteRT,
TFLite-Micro), ONNX, `edge.export`, CLI."""

import json
import os
import stat

import keras
import numpy as np
import pytest
from edge_models import conv_model
from edge_models import dense_model
from edge_models import fold
from edge_models import images

import edge
from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge.targets.onnx import converter as onnx_export
from edge.targets.tflite import converter as tflite
from edge.targets.tflite import integer_model
from edge.targets.tflite import step_model
from keras_snn import cli
from keras_snn import layers


def _fused(model):
    return fuse.fuse(ir.extract(model))


def _keras_step_run(graph, x):
    step = step_model.build_step_model(graph, batch_size=None)
    return step_model.run_steps(
        lambda d: {k: np.asarray(v) for k, v in step(d).items()}, graph, x
    )


def _per_sample(runner, graph, x):
    runs = [
        step_model.run_steps(runner, graph, x[i : i + 1]) for i in range(len(x))
    ]
    output = np.concatenate([r[0] for r in runs])
    steps = np.concatenate([np.stack(r[1], 1) for r in runs])
    return output, steps


@pytest.fixture(scope="module")
def conv_graph():
    keras.utils.set_random_seed(7)
    model = conv_model(timesteps=3, reset="soft")
    return model, _fused(model)


@pytest.fixture(scope="module")
def int16x8(conv_graph):
    """The conv model's quantized graph and its integer (16x8) model."""
    _, graph = conv_graph
    qgraph = quantize.quantize(graph, images(64, seed=3))
    return qgraph, integer_model.build_integer_model(qgraph)


# -- TFLite float ----------------------------------------------------------
@pytest.mark.parametrize("make", [conv_model, dense_model])
def test_litert_float_step_model_equals_keras(make):
    keras.utils.set_random_seed(3)
    model = make()
    graph = _fused(model)
    x = images(12, seed=5)
    model_bytes = tflite.convert(graph)
    assert "CUSTOM" not in tflite.op_names(model_bytes)
    output, steps = _per_sample(tflite.LiteRTRunner(model_bytes), graph, x)
    expected, expected_steps = _keras_step_run(graph, x)
    np.testing.assert_allclose(steps, np.stack(expected_steps, 1), atol=1e-5)
    np.testing.assert_allclose(output, model.predict(x, verbose=0), atol=1e-5)


# -- TFLite integer (16x8) ----------------------------------------------------
def test_int16x8_states_are_fed_back_raw(int16x8):
    # Every state input has exactly the type and quantization of its
    # state output: the integers go back unchanged.
    _, model_bytes = int16x8
    model = tflite._unpack(model_bytes)
    graph, signature = model.subgraphs[0], model.signatureDefs[0]
    outputs = {o.name: o.tensorIndex for o in signature.outputs}
    states = [i for i in signature.inputs if i.name != b"x"]
    assert len(states) == 3
    for item in states:
        source = graph.tensors[outputs[item.name]]
        target = graph.tensors[item.tensorIndex]
        assert source.type == target.type == tflite._schema().TensorType.INT16
        assert list(target.quantization.scale) == list(
            source.quantization.scale
        )
        assert list(target.quantization.zeroPoint) == [0]
        assert list(source.quantization.zeroPoint) == [0]


def test_int16x8_litert_tflm_and_integer_reference_agree_bit_for_bit(
    int16x8,
):
    qgraph, model_bytes = int16x8
    x = images(12, seed=4)
    reference = integer.run_integer(qgraph, x)[1]
    litert = integer_model.run_integer_steps(
        tflite.LiteRTRunner(model_bytes, reference_kernels=True), qgraph, x
    )[1]
    tflm = integer_model.run_integer_tflm(model_bytes, qgraph, x)[1]
    assert reference.shape == (12, 3, 10)
    assert len(np.unique(reference)) > 5  # real outputs, not a constant
    np.testing.assert_array_equal(litert, reference)
    np.testing.assert_array_equal(tflm, reference)


def test_int16x8_follows_the_float_model(conv_graph, int16x8):
    model, _ = conv_graph
    qgraph, model_bytes = int16x8
    x = images(48, seed=6)
    output, _ = integer_model.run_integer_steps(
        tflite.LiteRTRunner(model_bytes), qgraph, x
    )
    expected = model.predict(x, verbose=0)
    assert np.mean(output.argmax(1) == expected.argmax(1)) >= 0.75
    assert np.corrcoef(output.ravel(), expected.ravel())[0, 1] > 0.9


def test_the_converter_writes_float32_only(conv_graph):
    model_bytes = tflite.convert(conv_graph[1])
    model = tflite._unpack(model_bytes)
    schema = tflite._schema()
    types = {t.type for t in model.subgraphs[0].tensors}
    assert schema.TensorType.INT8 not in types
    assert schema.TensorType.INT16 not in types


# -- ONNX ------------------------------------------------------------------
def test_onnxruntime_equals_keras(conv_graph):
    model, graph = conv_graph
    x = images(32, seed=8)
    model_bytes = onnx_export.convert(graph)
    runner = onnx_export.OnnxRunner(model_bytes)
    output, steps = step_model.run_steps(runner, graph, x)
    expected, expected_steps = _keras_step_run(graph, x)
    np.testing.assert_allclose(
        np.stack(steps, 1), np.stack(expected_steps, 1), atol=1e-5
    )
    np.testing.assert_allclose(output, model.predict(x, verbose=0), atol=1e-5)
    assert "Loop" not in onnx_export.op_names(model_bytes)


# -- edge.export -----------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(11)
    model = dense_model(timesteps=3)
    out = tmp_path_factory.mktemp("export")
    x = images(96, seed=9)
    labels = np.random.default_rng(0).integers(0, 10, 32)
    previous = os.umask(0o027)  # every file gets 0o640, every folder 0o750
    try:
        report = edge.export(
            model,
            out,
            # dense_model has a soft reset.
            targets=("tflite", "tflite-int16x8", "onnx", "c"),
            calibration_data=x[:64],
            eval_data=(x[64:], labels),
            # An untrained network on noise has near ties between classes
            # (the int8 model of old agreed on 0.84 of the samples).
            min_agreement=0.75,
        )
    finally:
        os.umask(previous)
    return model, out, report


def test_export_writes_every_artefact_and_the_report(exported):
    model, out, report = exported
    assert sorted(os.listdir(out)) == [
        "c",
        "model.onnx",
        "model_float32.tflite",
        "model_int16x8.tflite",
        "report.json",
    ]
    assert {"model.c", "model.h", "Makefile"} <= set(os.listdir(out / "c"))
    targets = [row.target for row in report.rows]
    assert targets == [
        "keras",
        "reference-float",
        "reference-int",
        "tflite-float32",
        "tflite-int16x8",
        "tflite-int16x8",
        "tflite-int16x8",
        "onnx",
        "c-host",
        "c-cortex-m4",
    ]
    for row in report.rows:
        if row.path:
            assert row.size_bytes == os.path.getsize(out / row.path) > 1000
        if row.path and not row.target.startswith("c-"):
            assert row.ops
        assert 0.0 <= row.agreement <= 1.0
    cortex = report.row("c-cortex-m4").checks
    assert cortex["bit_exact"] is True
    assert (
        cortex["flash_bytes"] > 0 and cortex["instructions_per_inference"] > 0
    )
    int16x8 = [r for r in report.rows if r.target == "tflite-int16x8"]
    assert {r.consumer for r in int16x8} == {
        "LiteRT",
        "LiteRT (reference kernels)",
        "TFLite-Micro",
    }
    for row in int16x8:
        assert row.checks == {
            "litert_equals_integer_reference": True,
            "litert_reference_kernels_equals_integer_reference": True,
            "tflm_equals_integer_reference": True,
        }
        assert row.path == "model_int16x8.tflite"
    assert report.row("onnx").max_abs_diff < 1e-5
    assert report.row("tflite-float32").max_abs_diff < 1e-5
    assert report.row("reference-int").checks["spike_agreement"] > 0.9
    saved = json.loads((out / "report.json").read_text())
    assert saved["model"] == model.name and len(saved["rows"]) == 10
    table = report.table()
    assert "TFLite-Micro" in table and "onnxruntime" in table
    assert report.gate["passed"] and saved["gate"]["min_agreement"] == 0.75
    assert "Accuracy gate: lowest agreement with Keras " in table
    assert report.gate["lowest_agreement"] >= 0.75
    assert set(saved["seconds"]) == {
        "prepare",
        "tflite",
        "tflite-int16x8",
        "onnx",
        "c",
    }


def test_exported_files_get_the_permissions_of_the_umask(exported):
    _, out, _ = exported
    for folder, _folders, files in os.walk(out):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o750, folder
        for name in files:
            path = os.path.join(folder, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, path


def _bad_model():
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(4, activation="tanh", name="tanh_dense"))(x)
    x = layers.LIF()(x)
    return keras.Model(inputs, layers.Decoding(2)(x))


def test_failed_exports_leave_no_file(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with pytest.raises(edge.UnsupportedLayerError, match="tanh_dense"):
        edge.export(_bad_model(), out, calibration_data=images(8))
    with pytest.raises(edge.CalibrationError, match="calibration_data"):
        edge.export(dense_model(), out)
    with pytest.raises(edge.CalibrationError, match="shape"):
        edge.export(dense_model(), out, calibration_data=images(8, (4, 4, 1)))
    with pytest.raises(edge.ExportError, match="targets"):
        edge.export(dense_model(), out, targets="tflite,c64")

    def broken(graph):
        raise edge.ExportError("simulated converter failure")

    monkeypatch.setattr(onnx_export, "convert", broken)
    with pytest.raises(edge.ExportError, match="simulated"):
        edge.export(
            dense_model(),
            out,
            targets=("tflite", "onnx"),
            calibration_data=images(16),
        )
    # Refused before or after the work, an export leaves no folder at all
    # (and no hidden staging folder beside it).
    assert os.listdir(tmp_path) == []


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(edge.ExportError, match="out_dir"):
        edge.export(dense_model(), blocker / "sub", calibration_data=images(8))


def test_non_keras_snn_model_is_refused(tmp_path):
    inputs = keras.Input((4,))
    ann = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(edge.ExportError, match="not a keras_snn model"):
        edge.export(ann, tmp_path, calibration_data=np.zeros((4, 4)))
    assert os.listdir(tmp_path) == []


# -- command line ----------------------------------------------------------
def test_cli_export(tmp_path, capsys):
    keras.utils.set_random_seed(5)
    model = dense_model(timesteps=2)
    model_path = tmp_path / "m.keras"
    model.save(model_path)
    data = tmp_path / "data.npz"
    np.savez(data, x=images(40, seed=1), y=np.arange(40) % 10)
    out = tmp_path / "out"
    code = cli.main(
        [
            "export",
            str(model_path),
            "--out",
            str(out),
            "--targets",
            "onnx",
            "--calibration",
            str(data),
            "--eval",
            str(data),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "onnxruntime" in printed
    # A float target alone: no quantization, no integer reference row.
    assert "reference-int" not in printed
    assert sorted(os.listdir(out)) == ["model.onnx", "report.json"]
    # A data set name: its training split calibrates, its test split
    # evaluates (scikit-learn's digits are 8x8x1, like this model's input).
    code = cli.main(
        [
            "export",
            str(model_path),
            "--out",
            str(tmp_path / "out_digits"),
            "--targets",
            "onnx",
            "--calibration",
            "digits",
            "--calibration-samples",
            "64",
            "--eval-samples",
            "50",
        ]
    )
    assert code == 0
    assert "(50 evaluation samples" in capsys.readouterr().out
    code = cli.main(
        [
            "export",
            str(model_path),
            "--out",
            str(tmp_path / "out_missing"),
            "--calibration",
            "x.npy",
        ]
    )
    assert code == 2
    assert "x.npy" in capsys.readouterr().err


def test_cli_and_exporter_list_the_registered_targets(capsys):
    from edge import exporter
    from edge import targets

    assert exporter.TARGETS == targets.names() == edge.TARGETS
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"of {', '.join(targets.names())} (default: all)" in help_text


def test_export_to_loihi_and_nir_through_edge_export(tmp_path):
    keras.utils.set_random_seed(2)
    model = dense_model(3, threshold=0.5, decay=0.75, reset="hard")
    x = images(48, seed=12)
    previous = os.umask(0o022)
    try:
        report = edge.export(
            model,
            tmp_path,
            targets="loihi,nir",
            calibration_data=x[:32],
            eval_data=x[32:],
        )
    finally:
        os.umask(previous)
    for name in os.listdir(tmp_path):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    assert sorted(os.listdir(tmp_path)) == [
        "model.nir",
        "model_loihi.net",
        "report.json",
    ]
    loihi = report.row("loihi-netx")
    assert loihi.checks["spike_exact"] is True
    nir_rows = [row for row in report.rows if row.target == "nir"]
    assert {row.consumer for row in nir_rows} == {"Norse 1.1", "snnTorch 1.0"}
    for row in nir_rows:
        assert row.checks["spike_agreement"] == 1.0
