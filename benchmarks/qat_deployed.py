"""What `benchmarks/qat_accuracy.py` measures of one quantized model.

For each of the two QAT profiles of `edge.qat.quantize_model`, the
figures on a test split:

- post-training quantization (PTQ): the float model quantized as
  `edge.export` quantizes it, run by the profile's own reference
  (`edge.integer.run_integer` for `"int8"`, `edge.targets.loihi.run_loihi`
  for `"loihi"`);
- the QAT model: its accuracy (`predict`), the agreement of its classes
  with the reference of its own quantized graph (`edge.qat.to_qgraph`,
  `edge.qat.to_lgraph`), and the deployed program against that reference
  on every test image: the C runtime (the C target's generator and
  harness, host gcc) for `"int8"`, the NetX file in Lava's `fixed_pt`
  simulator for `"loihi"`. "Bit-exact" is the fraction of images whose
  every deployed output (C: per-step output integers; Lava: output spikes)
  equals the reference's; "agreement" the fraction whose deployed class
  equals the QAT Keras model's.

Used by `qat_accuracy.py` and its tests; not a script.
"""

import os
import tempfile
import time

import numpy as np

PROFILES = ("int8", "loihi")
EVAL_BATCH = 100  # images per reference call (bounds its memory)
C_CHUNK = 2000  # images per build of the C runtime (its inputs are embedded)
LAVA_CHUNK = 2000  # images per Lava run (one stream, resets between images)


def accuracy(scores, labels):
    """Fraction of rows of `scores` whose argmax is the label."""
    return float(np.mean(np.argmax(np.asarray(scores), -1) == labels))


def _batched(run, x, batch=EVAL_BATCH):
    """`run(x)` (a tuple of arrays) `batch` images a call, concatenated."""
    parts = [run(x[i : i + batch]) for i in range(0, len(x), batch)]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def reference_outputs(profile, graph, x, batch=EVAL_BATCH):
    """The profile's reference on `x`: `(scores, raw)`.

    Args:
        profile: `"int8"` (`graph` a `QuantizedGraph`; `raw` the
            per-step output integers of `edge.integer.run_integer`) or
            `"loihi"` (`graph` a `LoihiGraph`; `raw` the chip's output
            spikes of `edge.targets.loihi.run_loihi`).
        graph: the quantized graph.
        x: the images.
        batch: images per call (bounds memory).
    """
    if profile == "int8":
        from edge import integer

        return _batched(lambda b: integer.run_integer(graph, b), x, batch)
    from edge.targets import loihi

    return _batched(lambda b: loihi.run_loihi(graph, b), x, batch)


def c_outputs(qgraph, x, chunk=C_CHUNK, timeout=600):
    """Raw per-step outputs of the C runtime of `qgraph` on `x`.

    The C target's own generator and test harness (`edge.targets.c.run_c`,
    host gcc): the harness embeds its inputs in the program, so it is
    built and run once per `chunk` images.

    Returns:
        int64 `(N, T, *output_shape)`, as `edge.integer.run_integer`'s
        second return value.
    """
    from edge.targets import c

    with tempfile.TemporaryDirectory(prefix="qat-c-") as folder:
        return np.concatenate(
            [
                c.run_c(qgraph, x[i : i + chunk], folder, timeout=timeout)[0]
                for i in range(0, len(x), chunk)
            ]
        )


def lava_outputs(lgraph, x, chunk=LAVA_CHUNK):
    """Output spikes of the NetX file of `lgraph` in Lava on `x`.

    The images run as the `loihi` target runs them: the host encoder's
    spikes (`encode`) of `chunk` images at a time are one stream
    (`make_stream`: image `s` in steps `[s R, s R + T)`, resets between
    them) through the NetX file (`write_netx`) in Lava (`run_lava`); the
    Loihi reference runs the same stream (`run_loihi_reference`). Image
    `s`'s output is read in steps `[s R + depth, s R + depth + T)`.

    Returns:
        `(lava, reference)`: int8 `(N, T, *output_shape)` output spikes of
        Lava and of the Loihi reference on the same streams.
    """
    from edge.targets import loihi

    lava, expected = [], []
    with tempfile.TemporaryDirectory(prefix="qat-lava-") as folder:
        path = os.path.join(folder, loihi.NETX_FILE)
        loihi.write_netx(lgraph, path)
        for i in range(0, len(x), chunk):
            spikes = loihi.encode(lgraph, x[i : i + chunk])
            count, steps = spikes.shape[:2]
            stream, interval = loihi.make_stream(lgraph, spikes)
            slots = (
                np.arange(count)[:, None] * interval
                + lgraph.depth
                + np.arange(steps)[None, :]
            )
            got = loihi.run_lava(lgraph, path, stream, interval)
            ref = loihi.run_loihi_reference(lgraph, stream[None], interval)
            lava.append(got[slots])
            expected.append(ref[0][slots])
    return np.concatenate(lava), np.concatenate(expected)


def deployed_figures(keras_scores, reference_raw, deployed_raw, scores):
    """`(bit_exact, agreement)` of a deployed program's outputs.

    Args:
        keras_scores: the QAT Keras model's scores `(N, classes)`.
        reference_raw: the reference's raw outputs `(N, ...)`.
        deployed_raw: the deployed program's, the same layout.
        scores: the deployed program's scores `(N, classes)` (its readout
            of `deployed_raw`).

    Returns:
        `bit_exact`: the fraction of images whose every raw output equals
        the reference's; `agreement`: the fraction on which the deployed
        program's predicted class equals the Keras model's.

    Raises:
        ValueError: `deployed_raw` and `reference_raw` differ in shape, or
            their number of images differs from that of `keras_scores`.
    """
    deployed_raw = np.asarray(deployed_raw)
    reference_raw = np.asarray(reference_raw)
    if deployed_raw.shape != reference_raw.shape or len(deployed_raw) != len(
        keras_scores
    ):
        raise ValueError(
            "Arguments `deployed_raw` and `reference_raw` must have the same "
            "shape, with one image per row of `keras_scores`. Received: "
            f"deployed_raw.shape={deployed_raw.shape}, reference_raw.shape="
            f"{reference_raw.shape}, len(keras_scores)={len(keras_scores)}"
        )
    count = len(deployed_raw)
    same = np.all((deployed_raw == reference_raw).reshape(count, -1), axis=1)
    classes = np.argmax(np.asarray(scores), -1)
    agree = classes == np.argmax(np.asarray(keras_scores), -1)
    return float(np.mean(same)), float(np.mean(agree))


def c_figures(qgraph, keras_scores, int_raw, c_raw):
    """`deployed_figures` of the C runtime's raw outputs `c_raw` against
    the integer reference's `int_raw`; the C runtime's scores are
    `edge.targets.c.output_scores(qgraph, c_raw)`."""
    from edge.targets import c

    c_raw = np.asarray(c_raw)
    scores = c.output_scores(qgraph, c_raw) if len(c_raw) else c_raw
    return deployed_figures(keras_scores, int_raw, c_raw, scores)


def lava_figures(lgraph, keras_scores, ref_raw, lava_raw):
    """`deployed_figures` of Lava's output spikes `lava_raw` against the
    Loihi reference's `ref_raw`; Lava's scores are the host readout
    `edge.targets.loihi.decode(lgraph, lava_raw)`."""
    from edge.targets import loihi

    lava_raw = np.asarray(lava_raw)
    scores = loihi.decode(lgraph, lava_raw) if len(lava_raw) else lava_raw
    return deployed_figures(keras_scores, ref_raw, lava_raw, scores)


def ptq_graph(profile, model, calibration, state_bits):
    """`model` quantized after training as `edge.export` quantizes it
    (`fused = edge.fuse.fuse(edge.ir.extract(model))`, then
    `edge.quantize.quantize(fused, calibration, state_bits)` or
    `edge.targets.loihi.quantize_loihi(fused)`)."""
    from edge import fuse
    from edge import ir

    fused = fuse.fuse(ir.extract(model))
    if profile == "loihi":
        from edge.targets import loihi

        return loihi.quantize_loihi(fused)
    from edge import quantize

    return quantize.quantize(fused, np.asarray(calibration), state_bits)


def ptq_accuracy(profile, model, calibration, x_test, y_test, state_bits):
    """Accuracy of the profile's reference of `ptq_graph`."""
    graph = ptq_graph(profile, model, calibration, state_bits)
    return accuracy(reference_outputs(profile, graph, x_test)[0], y_test)


def own_graph(profile, qat_model):
    """The quantized graph a QAT model computes with (`edge.qat.to_qgraph`
    or `edge.qat.to_lgraph`)."""
    from edge import qat

    return (qat.to_lgraph if profile == "loihi" else qat.to_qgraph)(qat_model)


def deployed_check(profile, graph, keras_scores, ref_raw, x, chunk):
    """`(bit_exact, agreement)` of the profile's deployed program (C or
    Lava) on `x`, `chunk` images a build or run."""
    if profile == "loihi":
        lava_raw, stream_ref = lava_outputs(graph, x, chunk)
        return lava_figures(graph, keras_scores, stream_ref, lava_raw)
    return c_figures(graph, keras_scores, ref_raw, c_outputs(graph, x, chunk))


def qat_figures(
    qat_model, x_test, y_test, chunk=C_CHUNK, batch_size=256, profile="int8"
):
    """The QAT model's figures on the test split.

    Args:
        qat_model: a model made by `edge.qat.quantize_model` with
            `profile`.
        x_test, y_test: the test split.
        chunk: images per build of the C runtime or per Lava run; 0 skips
            the deployed check.
        batch_size: `predict`'s batch.
        profile: `"int8"` or `"loihi"`.

    Returns:
        A dict: `qat` (accuracy of `predict`), `agreement` (the fraction
        of images on which its predicted class equals that of the
        reference of its own quantized graph), `deployed_bit_exact` and
        `deployed_agreement` (`deployed_figures` of the C runtime or Lava;
        `None` without the check), `qat_eval_s` and `deployed_s` (wall
        times).
    """
    start = time.perf_counter()
    keras_scores = qat_model.predict(x_test, batch_size=batch_size, verbose=0)
    graph = own_graph(profile, qat_model)
    own, ref_raw = reference_outputs(profile, graph, x_test)
    predicted = np.argmax(np.asarray(keras_scores), -1)
    figures = {
        "qat": accuracy(keras_scores, y_test),
        "agreement": float(np.mean(predicted == np.argmax(own, -1))),
        "qat_eval_s": time.perf_counter() - start,
        "deployed_bit_exact": None,
        "deployed_agreement": None,
        "deployed_s": None,
    }
    if chunk:
        start = time.perf_counter()
        bit_exact, agree = deployed_check(
            profile, graph, keras_scores, ref_raw, x_test, chunk
        )
        figures.update(
            deployed_bit_exact=bit_exact,
            deployed_agreement=agree,
            deployed_s=time.perf_counter() - start,
        )
    return figures
