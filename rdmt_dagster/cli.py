"""The ``rdmt`` command.

``rdmt check FILE... [--config YAML] [--json] [--monitors a,b] [--catalog PATH]``
    Monitor reference files and L2 images on this computer, without Dagster
    or a database. Exit status: 0 all evaluations passed, 1 some failed,
    2 some file (or monitor on a file) could not be monitored.
``rdmt submit FILE...``
    Hand files to the platform (what the RFP calls after CRDS accepts a
    delivery): registers them in the RDMT database (``RDMT_HOME`` /
    ``RDMT_DATABASE_URL``); the ``registered_files_sensor`` requests their run.
    Submitting a file twice is harmless.
``rdmt status [--json]``
    Every monitored file of both arms and every rejected L2 notice.
``rdmt demo [--workdir DIR] [--full] [--arms reference,l2]``
    Synthetic deliveries through CRDS, the sensors and the Dagster daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _check(args) -> int:
    from .checking import check_files, file_document, format_table
    from .science.standards import Standards, StandardsError

    # Before anything is measured: a misspelt standard would otherwise go unapplied.
    try:
        standards = Standards(args.config)
    except StandardsError as exc:
        for problem in exc.problems:
            print(f"rdmt check: {problem}", file=sys.stderr)
        return 2
    monitors = [m.strip() for m in args.monitors.split(",") if m.strip()] if args.monitors else None
    if monitors:
        from .science.monitor import registry

        unknown = sorted(set(monitors) - set(registry()))
        if unknown:
            print(f"rdmt check: unknown monitor(s) {', '.join(unknown)}; known: {', '.join(sorted(registry()))}",
                  file=sys.stderr)
            return 2
    catalog = args.catalog or os.environ.get("RDMT_L2_CATALOG") or None
    checked = check_files(args.files, standards, workers=args.workers, monitors=monitors, catalog=catalog)
    if args.json:
        # json.dumps takes the C encoder; json.dump to a stream takes the pure-Python one (~10x slower).
        sys.stdout.write(json.dumps({"standards": standards.source, "files": [file_document(c) for c in checked]}))
        sys.stdout.write("\n")
    else:
        for c in checked:
            sys.stdout.write(format_table(c) + "\n")
    if any(not c.metric_set.ok for c in checked):
        return 2
    return 1 if any(c.evaluation_set.n_failed for c in checked) else 0


def _submit(args) -> int:
    from .submission import SubmissionError, submit

    try:
        names = submit(args.files, replace=args.replace)
    except (FileNotFoundError, SubmissionError) as exc:
        print(f"rdmt submit: {exc}", file=sys.stderr)
        return 2
    for name in names:
        print(f"registered {name}")
    return 0


def _status(args) -> int:
    from .resources import config_from_environment
    from .status import format_status, status_document

    document = status_document(config_from_environment().database())
    if args.json:
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        sys.stdout.write(format_status(document))
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    types = [t.strip() for t in args.types.split(",")] if args.types else None
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = set(arms) - {"reference", "l2"}
    if unknown or not arms:
        sys.stderr.write(f"rdmt demo: --arms takes reference and/or l2, not {', '.join(sorted(unknown)) or 'nothing'}\n")
        return 2
    return run_demo(args.workdir, workers=args.workers, types=types, full=args.full, arms=arms)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdmt", description="Roman Data Monitoring Tool: WFI reference-file and L2 image monitoring on Dagster")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check", help="monitor reference files and L2 images on this computer, without the platform",
        description="Run every monitor of each file's data model and its evaluators. Exit status: 0 all "
                    "evaluations passed, 1 some failed, 2 some file or monitor could not run.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--monitors", help="comma-separated monitors to run (default: every monitor of each file)")
    check.add_argument("--catalog", help="astrometric reference catalog (ECSV or Parquet with ra, dec) for the "
                                         "astrometry and psf monitors (default: $RDMT_L2_CATALOG)")
    check.add_argument("--config", help="YAML file overriding the default standards")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--workers", type=int, default=2, help="files read in parallel (default 2)")
    check.set_defaults(func=_check)

    submit = sub.add_parser("submit", help="register delivered files for monitoring by the platform")
    submit.add_argument("files", nargs="+", metavar="FILE")
    submit.add_argument("--replace", action="store_true",
                        help="register a file whose content differs from the one monitored under its name as a new "
                             "version, measured again (its earlier results are replaced)")
    submit.set_defaults(func=_submit)

    status = sub.add_parser(
        "status", help="every monitored file of both arms and every rejected notice",
        description="Every monitored file (reference files and L2 images: status, error, reprocess number, failed "
                    "evaluations, when received and measured, UTC) and every rejected L2 notice, from the RDMT "
                    "database (RDMT_DATABASE_URL, or the SQLite file in RDMT_HOME).")
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(func=_status)

    demo = sub.add_parser("demo", help="both arms through Dagster: synthetic reference deliveries and L2 images "
                                       "announced through a local S3/SNS/SQS")
    demo.add_argument("--workdir", default="rdmt-demo", help="where everything is written (default ./rdmt-demo)")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--types", help="comma-separated reference types (default: dark; with --full every type)")
    demo.add_argument("--full", action="store_true",
                      help="the full reference deliveries: every type, 18 detectors, twice (about 25 GB)")
    demo.add_argument("--arms", default="reference,l2", help="reference and/or l2 (default both)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    from ._yaml_speedup import install

    install()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
