"""The long run: `python -m edge.fuzz` and its summary table."""

import argparse
import dataclasses
import json
import time
import traceback

import numpy as np

from edge.fuzz.checks import CONSUMER_TARGETS
from edge.fuzz.checks import STATUSES
from edge.fuzz.checks import Outcome
from edge.fuzz.checks import available_targets
from edge.fuzz.checks import check_network
from edge.fuzz.checks import error_message
from edge.fuzz.networks import RandomChooser
from edge.fuzz.networks import build
from edge.fuzz.networks import draw_spec
from edge.fuzz.networks import inputs_for

PROGRESS_EVERY = 25  # networks between two tables of the long run


# -- the long run ----------------------------------------------------------
def summary_table(results, targets):
    """The table of the long run: per target, networks exported, refused,
    exact, mismatched and crashed.

    Args:
        results: list of `(spec, outcomes)`.
        targets: the targets checked.
    """
    header = (
        f"{'target':<16}{'networks':>9}{'exported':>9}{'refused':>8}"
        f"{'exact':>7}{'mismatched':>11}{'crashed':>8}{'s/net':>7}"
    )
    lines = [header, "-" * len(header)]
    for target in targets:
        rows = [o for _, outs in results for o in outs if o.target == target]
        count = {s: sum(o.status == s for o in rows) for s in STATUSES}
        exported = count["exact"] + count["mismatched"]
        seconds = sum(o.seconds for o in rows) / max(len(rows), 1)
        lines.append(
            f"{target:<16}{len(rows):>9}{exported:>9}{count['refused']:>8}"
            f"{count['exact']:>7}{count['mismatched']:>11}"
            f"{count['crashed']:>8}{seconds:>7.1f}"
        )
    return "\n".join(lines)


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m edge.fuzz",
        description=(
            "Exports random small keras_snn networks to every target and "
            "checks each consumer against its reference."
        ),
    )
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--targets",
        default=None,
        help="comma-separated subset of: " + ", ".join(CONSUMER_TARGETS),
    )
    parser.add_argument(
        "--samples", type=int, default=8, help="inputs run per network"
    )
    parser.add_argument(
        "--json", default=None, help="also write every outcome to this file"
    )
    args = parser.parse_args(argv)
    if args.networks < 1:
        parser.error(f"--networks must be >= 1. Received: {args.networks}")
    if args.samples < 1:
        parser.error(f"--samples must be >= 1. Received: {args.samples}")
    if args.targets is not None:
        args.targets = [t.strip() for t in args.targets.split(",") if t]
        unknown = sorted(set(args.targets) - set(CONSUMER_TARGETS))
        if unknown:
            parser.error(
                f"--targets: unknown {', '.join(unknown)}; choose from "
                + ", ".join(CONSUMER_TARGETS)
            )
    return args


def main(argv=None):
    """`python -m edge.fuzz`: the long differential run; returns the exit
    status (1 if any consumer mismatched or crashed)."""
    args = _parse(argv)
    targets = args.targets or available_targets()
    rng = np.random.default_rng(args.seed)
    results = []
    start = time.perf_counter()
    for index in range(args.networks):
        spec = draw_spec(RandomChooser(rng))
        try:
            model = build(spec)
            calibration = inputs_for(spec, 32, spec["seed"])
            x = inputs_for(spec, args.samples, spec["seed"] + 1)
            outcomes = check_network(model, calibration, x, targets)
        except Exception as error:  # noqa: BLE001 - reported, run goes on
            outcomes = [
                Outcome(t, "crashed", "build/extract: " + error_message(error))
                for t in targets
            ]
            traceback.print_exc()
        results.append((spec, outcomes))
        bad = [o for o in outcomes if o.status in ("mismatched", "crashed")]
        marks = " ".join(f"{o.target}={o.status}" for o in bad) or "ok"
        print(
            f"[{index + 1}/{args.networks}] {time.perf_counter() - start:.0f}s"
            f" {marks}",
            flush=True,
        )
        for outcome in bad:
            print(f"    {outcome.target}: {outcome.detail}", flush=True)
            print(f"    spec: {json.dumps(spec)}", flush=True)
        if (index + 1) % PROGRESS_EVERY == 0 and index + 1 < args.networks:
            print(summary_table(results, targets), flush=True)
    print(
        f"{len(results)} networks, seed {args.seed}, {args.samples} inputs each"
    )
    print(summary_table(results, targets))
    if args.json:
        from keras_snn import fileio

        fileio.write_json(
            [
                {
                    "spec": spec,
                    "outcomes": [dataclasses.asdict(o) for o in outs],
                }
                for spec, outs in results
            ],
            args.json,
        )
    failed = any(
        o.status in ("mismatched", "crashed")
        for _, outs in results
        for o in outs
    )
    return 1 if failed else 0
