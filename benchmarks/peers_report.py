"""The report of `benchmarks/peers.py`: its tables from a record.

`render(record)` turns the record that `peers.py --json` writes into the
Markdown page (settings, the wall-clock and CPU-time tables, the training
memory table, every round); the libraries' names and which peers each
row's ratios compare with live here too, so that the page reads a record
without running anything.
"""

import argparse

LIBRARIES = {
    "keras-snn": "keras-snn",
    "keras-snn-steps": "keras-snn, time_invariant=False",
    "keras-snn-sub32": "keras-snn, inference in slices of 32",
    "keras-snn-noxla": "keras-snn, jit_compile=False",
    "keras-snn-bf16": "keras-snn, mixed_bfloat16, jit_compile=False",
    "keras-snn-ref": "keras-snn, LIF(fused=False)",
    "keras-ann": "Keras ANN (ReLU, T=1)",
    "snntorch": "snnTorch",
    "spikingjelly": "SpikingJelly",
    "norse": "Norse",
    "snntorch-bf16": "snnTorch, bfloat16 autocast",
    "spikingjelly-bf16": "SpikingJelly, bfloat16 autocast",
}
PEERS = ("snntorch", "spikingjelly", "norse")
BF16 = "-bf16"  # the suffix of the libraries measured in bfloat16


def ratio_peers(library):
    """The peers a library's ratios compare with: the bfloat16 ones for a
    bfloat16 row, the float32 ones for the others."""
    if library.endswith(BF16):
        return tuple(p + BF16 for p in PEERS)
    return PEERS


def _best(results):
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    return {
        "library": ok[0]["library"],
        "version": ok[0]["version"],
        "train_samples_per_s": max(r["train_samples_per_s"] for r in ok),
        "infer_samples_per_s": max(r["infer_samples_per_s"] for r in ok),
        "train_cpu_samples_per_s": max(
            r["train_cpu_samples_per_s"] for r in ok
        ),
        "infer_cpu_samples_per_s": max(
            r["infer_cpu_samples_per_s"] for r in ok
        ),
        "peak_rss_mb": min(r["peak_rss_mb"] for r in ok),
        "working_mb": min(_working_mb(r) for r in ok),
        "train_working_mb": _train_working_mb(ok),
    }


def _train_working_mb(results):
    """The least working memory of the training steps alone (the peak
    before inference), or `None` for records made before it was kept."""
    if any(r.get("train_peak_rss_mb") is None for r in results):
        return None
    return min(r["train_peak_rss_mb"] - r["import_rss_mb"] for r in results)


def _working_mb(result):
    """Peak RSS minus the RSS once the framework was imported."""
    return result["peak_rss_mb"] - result["import_rss_mb"]


def _rate(value):
    """A throughput: whole samples/s, one decimal below 100."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _table(runs, args, cpu=False):
    """Markdown table; `cpu=True` uses the CPU-time throughput."""
    kind = "_cpu" if cpu else ""
    unit = "CPU-time samples/s" if cpu else "samples/s"
    lines = [
        f"| library | T | train {unit} | x faster peer | infer {unit} "
        "| x faster peer | peak RSS MB | x lower peer | working MB "
        "| x lower peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for timesteps in args.timesteps:
        best = {
            lib: _best(runs[lib, timesteps])
            for lib in args.libraries
            if (lib, timesteps) in runs
        }

        def top(library, key, pick, best=best):
            values = [
                best[p][key]
                for p in ratio_peers(library)
                if p in best and "error" not in best[p]
            ]
            return pick(values) if values else None

        for library in args.libraries:
            train_ref = top(library, f"train{kind}_samples_per_s", max)
            infer_ref = top(library, f"infer{kind}_samples_per_s", max)
            memory_ref = top(library, "peak_rss_mb", min)
            working_ref = top(library, "working_mb", min)
            r = best.get(library)
            t = 1 if library == "keras-ann" else timesteps
            name = LIBRARIES[library]
            if r is None or "error" in r:
                error = "not run" if r is None else r["error"]
                lines.append(f"| {name} | {t} | {error} |" + " |" * 7)
                continue
            train = r[f"train{kind}_samples_per_s"]
            infer = r[f"infer{kind}_samples_per_s"]
            memory, working = r["peak_rss_mb"], r["working_mb"]
            lines.append(
                f"| {name} | {t} | {_rate(train)} | "
                f"{_fmt(train_ref and train / train_ref, '.2f')} | "
                f"{_rate(infer)} | "
                f"{_fmt(infer_ref and infer / infer_ref, '.2f')} | "
                f"{memory:.0f} | "
                f"{_fmt(memory_ref and memory / memory_ref, '.2f')} | "
                f"{working:.0f} | "
                f"{_fmt(working_ref and working / working_ref, '.2f')} |"
            )
    return "\n".join(lines)


def _training_memory(runs, args):
    """Lines of the working memory of the training steps alone (the peak
    after them, before inference at the larger inference batch), for
    records that kept it; none otherwise."""
    rows = []
    for timesteps in args.timesteps:
        best = {
            lib: _best(runs[lib, timesteps])
            for lib in args.libraries
            if (lib, timesteps) in runs
        }
        ok = {k: v for k, v in best.items() if "error" not in v}
        values = [v["train_working_mb"] for v in ok.values()]
        if not ok or None in values:
            return [""]
        for library, r in ok.items():
            peers = [
                ok[p]["train_working_mb"]
                for p in ratio_peers(library)
                if p in ok
            ]
            lowest = min(peers) if peers else None
            mb = r["train_working_mb"]
            ratio = _fmt(lowest and mb / lowest, ".2f")
            rows.append(
                f"| {LIBRARIES[library]} | {timesteps} | {mb:.0f} | {ratio} |"
            )
    return [
        "",
        "Working memory of the training steps alone (peak RSS after them, "
        "before the inference steps, minus the RSS after the import):",
        "",
        "| library | T | training working MB | x lower peer |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def render(record):
    """The Markdown report of a record: settings, both tables, rounds."""
    settings = record["settings"]
    args = argparse.Namespace(**settings)
    runs = {(r["library"], r["timesteps"]): r["runs"] for r in record["runs"]}
    versions = sorted(
        {r["version"] for rs in runs.values() for r in rs if "error" not in r}
    )
    lines = [
        f"{record['workload']}: `{record['command']}`, started "
        f"{record['started']} ({record['wall_s']:.0f} s); train batch "
        f"{settings['batch']}, inference batch {settings['infer_batch']}, "
        f"{settings['warmup']} warm-up + {settings['repeats']} timed steps "
        f"(median), {record['threads']} threads per process, best of "
        f"{settings['rounds']} round(s); {record['machine']}, nproc="
        f"{record['nproc']}, Python {record['python']}.",
        "",
        *(f"- {version}" for version in versions),
        "",
        _table(runs, args),
        "",
        "The same runs, throughput from CPU time (batch x threads / median "
        "CPU seconds per step: the rate with both threads busy; less "
        "sensitive to other load on the machine):",
        "",
        _table(runs, args, cpu=True),
        *_training_memory(runs, args),
        "Per round (train / infer samples/s, train / infer CPU-time "
        "samples/s, peak / working RSS MB):",
        "",
    ]
    for (library, timesteps), results in runs.items():
        cells = [
            "error"
            if "error" in r
            else f"{_rate(r['train_samples_per_s'])} / "
            f"{_rate(r['infer_samples_per_s'])}, "
            f"{_rate(r['train_cpu_samples_per_s'])} / "
            f"{_rate(r['infer_cpu_samples_per_s'])}, "
            f"{r['peak_rss_mb']:.0f} / {_working_mb(r):.0f}"
            for r in results
        ]
        lines.append(
            f"- {LIBRARIES[library]}, T = {timesteps}: " + "; ".join(cells)
        )
    for (library, timesteps), results in runs.items():
        for r in results:
            if "error" in r:
                lines += [
                    "",
                    f"{LIBRARIES[library]} T={timesteps} failed:",
                    "",
                    "```",
                    r.get("stderr_tail", r["error"]),
                    "```",
                ]
    return "\n".join(lines) + "\n"
