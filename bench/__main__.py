"""Benchmarks: ``python -m bench [--quick] [--json] [--only NAME ...]`` (or ``make bench`` / ``make bench-quick``).

``real_faces`` (the ``utkface_cpu`` presets on the real UTKFace folder, ``--data-dir``; about 2 hours on 2
cores), ``throughput_real`` (one shortened ``utkface_cpu`` run on that folder, per phase) and ``casualties`` (the
gallery and the report on a results folder of real runs, ``--results``) run only when named.

Every figure is measured now, on this machine; ratios compare things measured side by side in
the same run, because absolute times on a shared machine drift.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench import (
    app,
    audit_file,
    bootstrap,
    casualties,
    data,
    demo_seeds,
    fairgrape_cost,
    gpu,
    grids,
    heldout,
    method_cost,
    real_faces,
    shrink,
    store,
    throughput,
    verdict_pages,
    verdicts,
)
from bench.common import Result

SUITES = {"method": method_cost.run, "grids": grids.run, "store": store.run, "app": app.run, "gpu": gpu.run,
          "bootstrap": bootstrap.run, "data": data.run, "demo_seeds": demo_seeds.run, "heldout": heldout.run,
          "real_faces": real_faces.run, "casualties": casualties.run,
          "audit_file": audit_file.run, "verdicts": verdicts.run, "verdict_pages": verdict_pages.run,
          "throughput": throughput.run, "throughput_real": throughput.real_faces, "fairgrape": fairgrape_cost.run,
          "shrink": shrink.run}
# Suites that take hours on a 2-core machine run only when named with --only.
ON_REQUEST = ("real_faces", "casualties", "throughput_real")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller stores (a few minutes)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, value, unit, target, holds} instead of a table")
    parser.add_argument("--only", nargs="+", choices=list(SUITES), help="run only these suites")
    parser.add_argument("--seeds", type=_positive, metavar="N",
                        help="demo_seeds: how many consecutive seeds (default 50; 10 with --quick)")
    parser.add_argument("--seed-start", type=_non_negative, default=0, metavar="S",
                        help="demo_seeds: the first seed (default 0)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="real_faces, casualties: the folder holding UTKFace (default: $CEAG_DATA, else ./data)")
    parser.add_argument("--results", metavar="DIR",
                        help="casualties, throughput_real: a results folder of runs on face images (casualties "
                             "default: $CEAG_RESULTS)")
    args = parser.parse_args(argv)
    options = {"demo_seeds": {"seeds": args.seeds, "seed_start": args.seed_start},
               "real_faces": {"data_dir": args.data_dir},
               "throughput_real": {"data_dir": args.data_dir, "results": args.results},
               "casualties": {"data_dir": args.data_dir, "results": args.results}}

    results: list[Result] = []
    start = time.perf_counter()
    for name, suite in SUITES.items():
        if (name not in args.only) if args.only else (name in ON_REQUEST):
            continue
        if not args.json:
            print(f"== {name}", file=sys.stderr, flush=True)
        for r in suite(quick=args.quick, **options.get(name, {})):
            results.append(r)
            if not args.json:
                print(r.line(), flush=True)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        held = sum(r.holds is True for r in results)
        judged = sum(r.holds is not None for r in results)
        print(f"\n{held} of {judged} targets hold; {time.perf_counter() - start:.0f} s in all", flush=True)
    return 0


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


if __name__ == "__main__":
    sys.exit(main())
