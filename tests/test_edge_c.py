"""edge C runtime: gcc host and QEMU Cortex-M4 builds, bit for bit against
the integer reference (`edge.integer`).

Needs gcc, arm-none-eabi-gcc and qemu-system-arm (`.ci/install_arm.sh`).
Without them the tests are skipped locally and fail in CI (`CI` set).
"""

import dataclasses
import functools
import os
import subprocess

import keras
import numpy as np
import pytest
from edge_models import conv_model
from edge_models import dense_model
from edge_models import images
from edge_models import require_programs
from edge_models import residual_model

from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from edge.exporter import ExportContext
from edge.targets import c as c_target

TOOLS = ("gcc", "make", "arm-none-eabi-gcc", "arm-none-eabi-size")
TOOLS += ("qemu-system-arm",)


@pytest.fixture(scope="module", autouse=True)
def toolchain():
    require_programs(TOOLS, "C runtime tests", "run .ci/install_arm.sh")


def _quantized(make, seed=3, **kwargs):
    keras.utils.set_random_seed(seed)
    model = make(**kwargs)
    graph = fuse.fuse(ir.extract(model))
    shape = graph.input_shape
    return model, quantize.quantize(graph, images(64, shape, seed=1))


# name -> (model factory, kwargs): dense (BN folded), conv (BN and tdBN
# folded) with hard and soft reset, a membrane readout, a residual block
# (affine shortcut and saturating add).
NETWORKS = {
    "dense": (dense_model, {}),
    "conv_hard": (conv_model, {"reset": "hard"}),
    "conv_soft_membrane": (conv_model, {"reset": "soft", "head": "membrane"}),
    "residual": (residual_model, {}),
}


@pytest.fixture(scope="module")
def networks():
    return {
        key: _quantized(make, **kwargs)
        for key, (make, kwargs) in NETWORKS.items()
    }


def _inputs(qgraph, count=8):
    return images(count, qgraph.graph.input_shape, seed=2)


# -- bit-exactness ---------------------------------------------------------
@pytest.mark.parametrize("platform", ["host", "cortex-m4"])
@pytest.mark.parametrize("network", list(NETWORKS))
def test_c_equals_integer_reference_bit_for_bit(
    networks, network, platform, tmp_path
):
    _, qgraph = networks[network]
    x = _inputs(qgraph)
    expected = integer.run_integer(qgraph, x)[1]
    assert np.count_nonzero(expected) > expected.size // 4  # not trivial
    raw, _ = c_target.run_c(qgraph, x, tmp_path, platform)
    assert raw.dtype == np.int64 and raw.shape == expected.shape
    np.testing.assert_array_equal(raw, expected)


def test_sanitizer_build_runs_clean(networks, tmp_path):
    for network in ("conv_soft_membrane", "residual"):
        _, qgraph = networks[network]
        x = _inputs(qgraph, 4)
        files = c_target.generate(qgraph) | c_target.generate_harness(qgraph, x)
        exe = c_target.build_host(files, tmp_path / network, sanitize=True)
        result = subprocess.run(
            [exe], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "Sanitizer" not in result.stderr
        assert "runtime error" not in result.stderr
        raw = c_target.read_outputs(result.stdout, qgraph, len(x))
        np.testing.assert_array_equal(raw, integer.run_integer(qgraph, x)[1])


# -- measurements ----------------------------------------------------------
@pytest.mark.parametrize("network", ["dense", "conv_hard"])
def test_flash_ram_and_instruction_counts(networks, network, tmp_path):
    _, qgraph = networks[network]
    size = c_target.model_size_cortex_m4(c_target.generate(qgraph), tmp_path)
    assert all(isinstance(v, int) and v > 0 for v in size.values())
    # The weights are const: they are in flash, not in RAM.
    kernels = sum(
        np.size(n.params["kernel_q"])
        for n in qgraph.nodes
        if "kernel_q" in n.params
    )
    assert size["flash"] > kernels > 0
    count = c_target.count_instructions(qgraph, _inputs(qgraph, 2), tmp_path)
    assert isinstance(count, int) and count > 0


def test_event_driven_layers_skip_silent_inputs(networks, tmp_path):
    # A silent input makes no spikes: the event-driven layers do no work,
    # so an inference costs fewer instructions.
    _, qgraph = networks["dense"]
    x = _inputs(qgraph, 2)
    busy = c_target.count_instructions(qgraph, x, tmp_path / "busy")
    quiet = c_target.count_instructions(qgraph, 0 * x, tmp_path / "quiet")
    assert 0 < quiet < busy
    source = c_target.generate(qgraph)["model.c"]
    assert source.count("no spike, no work") == 2  # both spiking layers


# -- generated code --------------------------------------------------------
def test_generated_sources_api_and_no_dynamic_allocation(networks):
    _, qgraph = networks["conv_hard"]
    files = c_target.generate(qgraph, name="kws")
    assert set(files) == {
        "kws.h",
        "kws.c",
        "kws_main_example.c",
        "Makefile",
        "ksnn_runtime.h",
        "ksnn_runtime.c",
        "ksnn_io.h",
        "ksnn_io.c",
        "startup_cm4.c",
        "cm4.ld",
    }
    header, source = files["kws.h"], files["kws.c"]
    # Reentrant (issue 14, item 5): caller-owned state, optional scratch
    # context, a status from every function.
    assert (
        "ksnn_status_t kws_step(kws_state_t *state, const ksnn_context_t "
        "*ctx," in header
    )
    assert "ksnn_status_t kws_init(kws_state_t *state);" in header
    assert "ksnn_status_t kws_reset(kws_state_t *state);" in header
    assert "} kws_state_t;" in header
    assert "#define KWS_TIMESTEPS 3" in header
    assert "static const int8_t g_kws_" in source
    assert "ksnn_arithmetic_shift_check" in files["ksnn_runtime.h"]
    # No file-static state; parameters in static const structs, not
    # literals in the node functions.
    assert "static kws_state_t" not in source
    neurons = [n for n in qgraph.nodes if n.op == "neuron"]
    assert source.count("static const ksnn_neuron_params_t") == len(neurons)
    synaptic = [n for n in qgraph.nodes if "kernel_q" in n.params]
    assert source.count("static const ksnn_requant_params_t") == len(synaptic)
    functions = source[source.index("static ksnn_status_t node_") :]
    for node in neurons:
        assert f"u >= {node.params['threshold_q']}" not in functions
    # The arithmetic (rounding shift, requantization, neuron step,
    # saturation) is in ksnn_runtime.h, once: node functions call it.
    # Each neuron here reads a conv or dense layer; those whose layer has
    # the bounds of the 32-bit requantization requantize in the same pass
    # (not the encoding layer: int8 inputs times int8 weights).
    from edge.targets.c.plan import Plan

    plan = Plan(qgraph, "kws")
    fast = [n for n in neurons if plan.fast_requant[n.inputs[0]]]
    assert 0 < len(fast) < len(neurons)
    fused = "return ksnn_requantize_neuron16(acc, v, y,"
    assert functions.count(fused) == len(fast)
    assert "ksnn_requantize" in functions
    for word in ("rshift_round", "->decay_q", "->threshold", ">>", "m[c]"):
        assert word not in functions, word
    assert "static void" not in source
    for text in files.values():
        for word in ("malloc", "calloc", "realloc", "free(", "float"):
            assert word not in text


def test_neurons_after_an_add_requantize_nothing(networks):
    # A neuron reading a saturating add (residual block) steps on currents;
    # the bit-exact tests run both forms.
    _, qgraph = networks["residual"]
    source = c_target.generate(qgraph)["model.c"]
    assert "ksnn_neuron_step16(v[i], x[i], p, &fire)" in source
    assert "ksnn_requantize_neuron16(acc, v, y," in source


def test_makefile_builds_and_runs_the_example(networks, tmp_path):
    _, qgraph = networks["dense"]
    for file, text in c_target.generate(qgraph).items():
        (tmp_path / file).write_text(text)
    subprocess.run(
        ["make", "-s", "all"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    host = subprocess.run(
        ["./model_example"], cwd=tmp_path, capture_output=True, text=True
    )
    arm = c_target.run_qemu(tmp_path / "model_example.elf")
    assert host.returncode == 0
    assert host.stdout == arm and "class: " in arm


# -- refusals and failures -------------------------------------------------
def _with_node(qgraph, index, **changes):
    nodes = list(qgraph.nodes)
    nodes[index] = dataclasses.replace(nodes[index], **changes)
    return dataclasses.replace(qgraph, graph=qgraph.graph.replace(nodes))


def test_unsupported_op_is_refused_naming_the_node(networks):
    _, qgraph = networks["dense"]
    broken = _with_node(qgraph, 3, op="batch_norm")
    with pytest.raises(UnsupportedLayerError, match="lif.*batch_norm.*fuse"):
        c_target.generate(broken)


def test_accumulator_overflow_is_refused(networks):
    # int8 inputs times int8 weights over 140k inputs overflow int32.
    _, qgraph = networks["dense"]
    dense = qgraph.nodes[2]
    params = dict(dense.params, kernel_q=np.full((140_000, 32), 127))
    flat = _with_node(qgraph, 1, shape=(140_000,))
    broken = _with_node(flat, 2, params=params)
    with pytest.raises(UnsupportedLayerError, match="beyond int32"):
        c_target.generate(broken)


def test_invalid_name_is_refused(networks):
    _, qgraph = networks["dense"]
    with pytest.raises(ExportError, match="C identifier"):
        c_target.generate(qgraph, name="my-model")


def test_hang_under_qemu_is_a_consumer_error(networks, tmp_path):
    _, qgraph = networks["dense"]
    files = c_target.generate(qgraph)
    files["model_main_example.c"] = "int main(void)\n{\n    for (;;) {\n"
    files["model_main_example.c"] += "    }\n}\n"
    elf = c_target.build_cortex_m4(files, tmp_path)
    with pytest.raises(ConsumerError, match="time limit"):
        c_target.run_qemu(elf, timeout=2)


# -- edge.export target ----------------------------------------------------
def test_export_target_rows_and_files(networks):
    model, qgraph = networks["conv_hard"]
    x = _inputs(qgraph, 12)
    int_out, _ = integer.run_integer(qgraph, x)
    keras_out = np.asarray(model.predict(x, verbose=0), np.float64)
    labels = keras_out.argmax(-1)
    context = ExportContext(
        graph=qgraph.graph,
        qgraph=qgraph,
        calibration=x,
        x=x,
        labels=labels,
        keras_out=keras_out,
        float_out=None,
        float_trace=None,
        int_out=int_out,
        int_trace=None,
        timesteps=3,
    )
    rows = c_target.export_target(context)
    assert [(r.target, r.consumer) for r in rows] == [
        ("c-host", "gcc x86-64"),
        ("c-cortex-m4", "QEMU mps2-an386"),
    ]
    for row in rows:
        assert row.checks["bit_exact"] is True
        assert row.checks["samples"] == 12
        assert row.max_abs_diff == 0.0
        assert row.agreement == pytest.approx(
            np.mean(int_out.argmax(-1) == labels)
        )
    checks = rows[1].checks
    for key in (
        "flash_bytes",
        "ram_bytes",
        "instructions_per_inference",
        "synaptic_ops_per_inference",
    ):
        assert isinstance(checks[key], int) and checks[key] > 0
    ratio = (
        checks["instructions_per_inference"]
        / (checks["synaptic_ops_per_inference"])
    )
    assert checks["instructions_per_synop"] == pytest.approx(ratio, rel=0.01)
    assert {"c/model.c", "c/model.h", "c/Makefile"} <= set(context.files)
    assert all(isinstance(v, bytes) for v in context.files.values())


# -- reentrant API (issue 14, item 5) --------------------------------------
@pytest.mark.parametrize("platform", ["host", "host-sanitize", "cortex-m4"])
@pytest.mark.parametrize("network", ["dense", "conv_soft_membrane"])
def test_two_instances_interleaved_equal_the_reference(
    networks, network, platform, tmp_path
):
    # Two instances of one model, each with its own state, step in turn
    # on different samples; each must equal the integer reference.
    _, qgraph = networks[network]
    x = _inputs(qgraph, 6)
    expected = integer.run_integer(qgraph, x)[1]
    # The samples differ, so a state shared between instances would show.
    assert not np.array_equal(expected[0], expected[1])
    raw, _ = c_target.run_c(qgraph, x, tmp_path, platform, instances=2)
    np.testing.assert_array_equal(raw, expected)
    source = c_target.generate_harness(qgraph, x, instances=2)
    assert "#define KSNN_TEST_INSTANCES 2" in source["model_test_data.h"]


_STATUS_MAIN = """
#include <stdint.h>
#include "model.h"

int main(void)
{
    static model_state_t a, b;
    static int32_t scratch[MODEL_SCRATCH_BYTES / 4 + 1];
    static int8_t input[MODEL_INPUT_SIZE];
    static int32_t output[MODEL_OUTPUT_SIZE];
    const ksnn_context_t ok = {scratch, (int32_t)sizeof(scratch)};
    const ksnn_context_t small = {scratch, MODEL_SCRATCH_BYTES - 1};
    const ksnn_context_t odd = {(char *)scratch + 1, MODEL_SCRATCH_BYTES};
    const ksnn_context_t none = {NULL, MODEL_SCRATCH_BYTES};
    if (model_init(NULL) != KSNN_ERROR_ARGUMENT) return 10;
    if (model_reset(NULL) != KSNN_ERROR_ARGUMENT) return 11;
    if (model_init(&a) != KSNN_OK || model_init(&b) != KSNN_OK) return 12;
    if (model_step(NULL, &ok, input, output) != KSNN_ERROR_ARGUMENT)
        return 13;
    if (model_step(&a, &ok, NULL, output) != KSNN_ERROR_ARGUMENT) return 14;
    if (model_step(&a, &ok, input, NULL) != KSNN_ERROR_ARGUMENT) return 15;
    if (model_step(&a, &none, input, output) != KSNN_ERROR_ARGUMENT)
        return 16;
    if (model_step(&a, &small, input, output) != KSNN_ERROR_SIZE) return 17;
    if (model_step(&a, &odd, input, output) != KSNN_ERROR_SIZE) return 18;
    if (model_step(&a, &ok, input, output) != KSNN_OK) return 19;
    if (model_step(&b, NULL, input, output) != KSNN_OK) return 20;
    if (sizeof(model_state_t) != MODEL_STATE_BYTES) return 21;
    return 0;
}
"""


def _run_test_main(qgraph, main_source, platform, tmp_path):
    """Builds the generated C of `qgraph` with `main_source` as its main,
    for the host (ASan/UBSan) or QEMU's Cortex-M4, and runs it; a non-zero
    exit is a ConsumerError."""
    files = c_target.generate(qgraph)
    files["model_main_example.c"] = main_source
    if platform == "cortex-m4":
        c_target.run_qemu(c_target.build_cortex_m4(files, tmp_path))
    else:
        exe = c_target.build_host(files, tmp_path, sanitize=True)
        c_target.run_host(exe)


@pytest.mark.parametrize("platform", ["host-sanitize", "cortex-m4"])
def test_every_function_returns_a_status(networks, platform, tmp_path):
    _, qgraph = networks["conv_hard"]
    _run_test_main(qgraph, _STATUS_MAIN, platform, tmp_path)


def test_make_host_builds_with_warnings_as_errors(networks, tmp_path):
    _, qgraph = networks["residual"]
    files = c_target.generate(qgraph)
    flags = next(
        line for line in files["Makefile"].splitlines() if "CFLAGS ?=" in line
    )
    for flag in ("-Wall", "-Wextra", "-Wpedantic", "-Werror"):
        assert flag in flags.split()
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    make = ["make", "-s", "host"]
    subprocess.run(make, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "model_example").exists()
    # A warning fails the build: -Werror is in effect.
    (tmp_path / "model_example").unlink()
    (tmp_path / "model.c").write_text(
        files["model.c"] + "static int unused_function(void) { return 0; }\n"
    )
    result = subprocess.run(make, cwd=tmp_path, capture_output=True)
    assert result.returncode != 0
    assert not (tmp_path / "model_example").exists()


def test_support_files_are_package_data():
    # The fixed C files ship in the wheel (setup.cfg package_data).
    import configparser
    import fnmatch

    from edge.targets.c import codegen

    root = os.path.join(os.path.dirname(__file__), "..")
    config = configparser.ConfigParser()
    config.read(os.path.join(root, "setup.cfg"))
    patterns = config["options.package_data"]["edge"].split(",")
    for file in (*codegen.SUPPORT_FILES, "Makefile.in"):
        path = os.path.join(codegen.TEMPLATE_DIR, file)
        assert os.path.isfile(path), path
        relative = os.path.relpath(path, os.path.join(root, "edge"))
        assert any(fnmatch.fnmatch(relative, p.strip()) for p in patterns)


# -- synaptic operations (issue 14, item 6) ----------------------------------
def _brute_force_synops(qgraph, x):
    """Synaptic operations by looping over every output and kernel tap."""
    from edge import kernels

    _, _, trace = integer.run_integer(qgraph, x, record=True)
    spiking = {n.name for n in qgraph.nodes if n.op == "neuron"}
    total = 0
    for node in qgraph.nodes:
        if node.op not in ("conv2d", "dense"):
            continue
        source = node.inputs[0]
        while source not in spiking and qgraph.graph.node(source).op in (
            "avg_pool",
            "max_pool",
            "flatten",
        ):
            source = qgraph.graph.node(source).inputs[0]
        event = source in spiking
        for values in trace[node.inputs[0]]:
            for sample in values:
                if node.op == "dense":
                    inputs = np.count_nonzero(sample) if event else sample.size
                    total += inputs * node.shape[-1]
                    continue
                kh, kw, ci, co = np.shape(node.params["kernel_q"])
                h, w, _ = sample.shape
                sh, sw = node.params["strides"]
                pt, pl = (0, 0)
                if node.params["padding"] == "same":
                    pt = kernels.same_padding(h, kh, sh)[0]
                    pl = kernels.same_padding(w, kw, sw)[0]
                for oy in range(node.shape[0]):
                    for ox in range(node.shape[1]):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oy * sh - pt + ky, ox * sw - pl + kx
                                if 0 <= iy < h and 0 <= ix < w:
                                    taps = sample[iy, ix]
                                    inputs = (
                                        np.count_nonzero(taps) if event else ci
                                    )
                                    total += inputs * co
    return total / len(x)


def test_synaptic_operations_equal_a_brute_force_count(networks):
    for network in ("dense", "conv_hard"):
        _, qgraph = networks[network]
        x = _inputs(qgraph, 3)
        counts = c_target.synaptic_operations(qgraph, x)
        assert counts["accumulates"] > 0 and counts["macs"] > 0
        assert counts["total"] == pytest.approx(_brute_force_synops(qgraph, x))


def _span(plan, name):
    """Bytes `[start, end)` of a node's buffer in the scratch arena."""
    buf = plan.buffers[name]
    if buf.offset is None:  # the input: the caller's array
        return None
    width = int(buf.ctype[-4:-2].strip("t")) // 8
    return buf.offset, buf.offset + buf.size * width


def _overlap(a, b):
    return a and b and a[0] < b[1] and b[0] < a[1]


def test_buffers_with_disjoint_lifetimes_share_scratch(networks):
    from edge.targets.c.plan import Plan

    for network in NETWORKS:
        _, qgraph = networks[network]
        plan = Plan(qgraph, "model")
        nodes = plan.graph.nodes
        span = functools.partial(_span, plan)
        overlap = _overlap

        owned = [n.name for n in nodes if plan.buffers[n.name].owned]
        total = sum(span(n)[1] - span(n)[0] for n in owned)
        assert max(span(n)[1] for n in owned) <= plan.scratch_bytes <= total
        for j, node in enumerate(nodes[1:], 1):
            if node.op == "flatten":
                continue
            # A node never writes over what it reads ...
            for source in node.inputs:
                assert not overlap(span(node.name), span(source)), node.name
            # ... nor over a value that a later node still reads.
            for later in nodes[j + 1 :]:
                for source in later.inputs:
                    earlier = [n.name for n in nodes[:j]]
                    if source in earlier:
                        assert not overlap(span(node.name), span(source))
            # nor over the graph's output once it is written.
            if plan.graph.output in [n.name for n in nodes[:j]]:
                assert not overlap(span(node.name), span(plan.graph.output))
    _, qgraph = networks["conv_hard"]
    plan = Plan(qgraph, "model")
    owned = [b for b in plan.buffers.values() if b.owned]
    assert plan.scratch_bytes < sum(
        b.size * int(b.ctype[-4:-2].strip("t")) // 8 for b in owned
    )


# -- row kernels (issue 14, item 6) ----------------------------------------
_KERNEL_MAIN = """
#include <stdint.h>
#include "model.h"

/* Every row length 0..40 and inputs from -32767 to 32767 (1: the spike
   path), against a plain loop; weight rows word-aligned, as generated. */
static const int32_t xs[] = {1, 0, -1, 2, 3, 4, -7, 127, -127, 32767,
                             -32767};
static int8_t w[44] KSNN_ALIGN;
static int32_t acc[44], ref[44];

int main(void)
{
    uint32_t seed = 12345u;
    for (int32_t n = 0; n <= 40; ++n) {
        for (uint32_t k = 0; k < sizeof(xs) / sizeof(xs[0]); ++k) {
            for (int32_t o = 0; o < 44; ++o) {
                seed = seed * 1103515245u + 12345u;
                w[o] = (int8_t)(seed >> 16);
                acc[o] = ref[o] = (int32_t)(seed >> 4) - (1 << 27);
            }
            for (int32_t o = 0; o < n; ++o) {
                ref[o] += w[o] * xs[k];
            }
            if (xs[k] == 1 && (n & 1)) {
                ksnn_accumulate_s8_spikes(acc, w, n);
            } else {
                ksnn_accumulate_s8(acc, w, n, xs[k]);
            }
            for (int32_t o = 0; o < 44; ++o) {
                if (acc[o] != ref[o]) {
                    return 10;
                }
            }
        }
    }
    /* ksnn_requant_fast against ksnn_requantize_one where the generator
       would choose it (see ksnn_requant_fast): every shift, 15-bit
       multipliers, extreme and random accumulators and biases within the
       bound, 16- and 32-bit output ranges. */
    for (int n = 1; n <= 30; ++n) {
        for (int32_t k = 0; k < 400; ++k) {
            seed = seed * 1103515245u + 12345u;
            const int32_t m = (int32_t)((1u << 14) | (seed >> 18));
            const int32_t total =
                (int32_t)(((1u << 31) - (1u << (n - 1)) - 1u) / (uint32_t)m);
            seed = seed * 1103515245u + 12345u;
            const int32_t bias =
                (int32_t)(seed % ((uint32_t)total + 1u)) - total / 2;
            const int32_t room = total - (bias < 0 ? -bias : bias);
            seed = seed * 1103515245u + 12345u;
            int32_t acc = (int32_t)(seed % ((uint32_t)room + 1u));
            acc = k % 4 == 0 ? room : k % 4 == 1 ? -room : acc;
            acc = (k & 1) ? -acc : acc;
            const ksnn_requant_fast_t fast =
                ksnn_requant_fast_setup(m, n, bias);
            for (int32_t bits = 16; bits <= 32; bits += 16) {
                const int32_t hi = (int32_t)((1ull << (bits - 1)) - 1u);
                const int32_t lo = -hi - 1;
                if (ksnn_requant_fast(acc, &fast, lo, hi) !=
                    ksnn_requantize_one(acc, m, n, bias, lo, hi)) {
                    return 20;
                }
            }
        }
    }
    return 0;
}
"""


@pytest.mark.parametrize("platform", ["host-sanitize", "cortex-m4"])
def test_kernels_equal_their_definitions(networks, platform, tmp_path):
    # ksnn_accumulate_s8(_spikes): the Cortex-M4 assembly (blocks of 16
    # and 8 outputs, then one at a time) and the portable C; the 32-bit
    # requantization against the 64-bit definition.
    _, qgraph = networks["dense"]
    _run_test_main(qgraph, _KERNEL_MAIN, platform, tmp_path)


@pytest.mark.parametrize("platform", ["host-sanitize", "cortex-m4"])
def test_general_arithmetic_paths_equal_the_reference(
    networks, platform, tmp_path, monkeypatch
):
    # The 64-bit requantization (ksnn_requantize, for layers whose bounds
    # do not allow the 32-bit one) and the 64-bit neuron step (states
    # wider than 16 bits), bit for bit.
    from edge.targets.c import plan as plan_module

    model, _ = networks["conv_soft_membrane"]
    graph = fuse.fuse(ir.extract(model))
    wide = quantize.quantize(graph, images(64, graph.input_shape, seed=1), 24)
    monkeypatch.setattr(plan_module, "fast_requant_exact", lambda *a: False)
    source = c_target.generate(wide)["model.c"]
    assert "ksnn_requantize_fast" not in source
    assert "ksnn_neuron_step(" in source
    x = _inputs(wide, 4)
    raw, _ = c_target.run_c(wide, x, tmp_path, platform)
    np.testing.assert_array_equal(raw, integer.run_integer(wide, x)[1])


def test_fast_requantization_needs_its_bounds():
    from edge.targets.c.plan import fast_requant_exact

    m = (1 << 15) - 1
    # (|acc| + |bias|) * m + 2^(n-1) < 2^31, with 1 <= n <= 30.
    largest = ((1 << 31) - (1 << 19) - 1) // m
    assert fast_requant_exact([largest], [m], [20], [0])
    assert fast_requant_exact([largest - 5], [m], [20], [-5])
    assert not fast_requant_exact([largest + 1], [m], [20], [0])
    assert not fast_requant_exact([largest - 5], [m], [20], [6])
    assert not fast_requant_exact([0], [m], [31], [0])
    assert not fast_requant_exact([0], [m], [0], [0])
