"""``tidings lab``: the fault lab — list its scenarios, run them, check and report.

``tidings lab list`` names every scenario with a one-line description (kernel scenarios are
marked unavailable, with the reason, where network namespaces cannot be made: not root).
``tidings lab run SCENARIO|all [--quick] [--seed N] [--out DIR]`` runs them, prints the summary
table, the violations and the report's path, and exits 0 iff every scenario passed; 1 (one line
on stderr, nothing run) if a scenario's directory under ``--out`` already holds a run; 2 for an
unknown scenario or one that cannot run here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "cmd_list", "cmd_run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``lab`` subcommand and its ``list`` and ``run`` actions."""
    p = sub.add_parser(
        "lab",
        help="the fault lab: run fault scenarios against a real relay and check delivery",
        description="Run named fault scenarios (crashes, outages, clock jumps, packet loss, "
        "dead zones, handoffs) against a real relay and real client processes, then check "
        "that nothing was lost, duplicated or reordered, and write an HTML report.",
    )
    lab_sub = p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    ls = lab_sub.add_parser("list", help="list the scenarios")
    ls.set_defaults(func=cmd_list)
    run = lab_sub.add_parser("run", help="run a scenario (or all) and check it")
    run.add_argument("scenario", help="a scenario name (see `tidings lab list`) or `all`")
    run.add_argument("--quick", action="store_true", help="the short variant (seconds)")
    run.add_argument("--seed", type=int, help="the workload's seed (default: the scenario's)")
    run.add_argument(
        "--out", type=Path, help="the output directory (default: ./lab-runs/<timestamp>)"
    )
    run.set_defaults(func=cmd_run)


def cmd_list(args: argparse.Namespace) -> int:
    """Print every scenario, its seed, and whether it can run here."""
    from ..lab.runner import available
    from ..lab.scenarios import SCENARIOS

    width = max(len(n) for n in SCENARIOS)
    for name, s in SCENARIOS.items():
        reason = available(s)
        mark = f"  [unavailable: {reason}]" if reason is not None else ""
        print(f"{name:<{width}}  {s.description} (seed {s.seed}){mark}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the scenario(s); print the table, the violations and the report path."""
    from ..lab.checker import format_violations
    from ..lab.report import summary_table
    from ..lab.runner import REPORT_FILE, available, run_all
    from ..lab.scenarios import SCENARIOS

    # Relative (the default too) means relative to the working directory: resolved once here.
    out: Path = (args.out or Path("lab-runs") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    if args.scenario == "all":
        names = [n for n, s in SCENARIOS.items() if available(s) is None]
        skipped = [n for n in SCENARIOS if n not in names]
        if skipped:
            print(f"skipped (unavailable here): {', '.join(skipped)}")
    elif args.scenario in SCENARIOS:
        reason = available(SCENARIOS[args.scenario])
        if reason is not None:
            print(f"tidings lab: {args.scenario} is unavailable here: {reason}", file=sys.stderr)
            return 2
        names = [args.scenario]
    else:
        print(
            f"tidings lab: unknown scenario {args.scenario!r}; see `tidings lab list`",
            file=sys.stderr,
        )
        return 2
    try:
        results = run_all(out, quick=args.quick, seed=args.seed, names=names)
    except FileExistsError as exc:  # before anything ran: the earlier run is left as it was
        print(f"tidings lab: {exc}", file=sys.stderr)
        return 1
    if results:
        print(summary_table(results))
    for _, result in results:
        if not result.ok:
            print(format_violations(result))
    print(f"report: {out / REPORT_FILE}")
    passed = len(results) == len(names) and all(r.ok for _, r in results)
    return 0 if passed else 1
