"""The ``rdmt`` command.

``rdmt check FILE... [--config YAML] [--json] [--monitors a,b] [--catalog PATH]``
    Monitor reference files and L2 images on this computer, without Dagster
    or a database. Exit status: 0 nothing failed, 1 some evaluation failed,
    2 some file (or monitor on a file) could not be monitored. A verdict an
    evaluator could not give is "not evaluated" (``n/e``; ``"passed": null``).
``rdmt submit FILE... [--replace]``
    Hand files to the platform (what the RFP calls after CRDS accepts a
    delivery): registers them in the RDMT database (``RDMT_HOME`` /
    ``RDMT_DATABASE_URL``) as one delivery, ``submit:<UTC time>``; the
    ``registered_files_sensor`` requests their run. Submitting a file twice
    is harmless.
``rdmt status [--json]``
    Every monitored file of both arms and every rejected L2 notice.
``rdmt history METRIC [--detector D] [--scale S] [--region N] [--since DATE] [--arm A] [--json|--csv]``
    One metric's values over time with each evaluator's verdict.
``rdmt failures [--delivery ID | --since DATE] [--arm A] [--json]``
    What failed: per file, metric, scale and evaluator, the failing regions
    and the worst value against its limit.
``rdmt demo [--workdir DIR] [--full] [--arms reference,l2]``
    Synthetic deliveries through CRDS, the sensors and the Dagster daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# The scales of `rdmt_dagster.science.scales`, listed here so that `rdmt --help`
# needs no numpy; a test checks that they agree.
SCALE_CHOICES = ("detector", "amp", "superpixel")


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


def _database_url_or_error(command: str) -> str | None:
    """The database URL of ``rdmt history`` / ``failures``, or None (after saying why) when there is none."""
    from .history import database_url, missing_sqlite_file

    url = database_url()
    missing = missing_sqlite_file(url)
    if missing is not None:
        print(f"rdmt {command}: no RDMT database at {missing} (set RDMT_HOME or RDMT_DATABASE_URL)", file=sys.stderr)
        return None
    return url


def _arms(value: str | None) -> tuple[str, ...]:
    from .history import ARMS

    return ARMS if value is None else (value,)


def _history(args) -> int:
    from .history import (check_scale_region, format_history, history_csv, history_document, metric_history,
                          parse_since, read_upgraded)

    try:
        region = check_scale_region(args.scale, args.region)
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"rdmt history: {exc}", file=sys.stderr)
        return 2
    url = _database_url_or_error("history")
    if url is None:
        return 2
    points = read_upgraded(url, lambda conn: metric_history(
        conn, args.metric, detector=args.detector, scale=args.scale, region=region, since=since,
        arms=_arms(args.arm)))
    if args.json:
        query = {"metric": args.metric, "scale": args.scale, "region": region, "detector": args.detector,
                 "since": since.isoformat() + "Z" if since else None, "arms": list(_arms(args.arm))}
        sys.stdout.write(json.dumps(history_document(points, query)) + "\n")
    elif args.csv:
        sys.stdout.write(history_csv(points))
    else:
        sys.stdout.write(format_history(points, args.metric, args.scale, region))
    return 0


def _failures(args) -> int:
    from .history import failed_groups, failures_document, format_failures, parse_since, read_upgraded

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"rdmt failures: {exc}", file=sys.stderr)
        return 2
    url = _database_url_or_error("failures")
    if url is None:
        return 2
    groups = read_upgraded(url, lambda conn: failed_groups(conn, delivery=args.delivery, since=since,
                                                           arms=_arms(args.arm)))
    if args.json:
        query = {"delivery": args.delivery, "since": since.isoformat() + "Z" if since else None,
                 "arms": list(_arms(args.arm))}
        sys.stdout.write(json.dumps(failures_document(groups, query)) + "\n")
    else:
        sys.stdout.write(format_failures(groups))
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
        prog="rdmt",
        description="Roman Data Monitoring Tool: quality monitoring of the WFI's calibration reference files and "
                    "Level-2 images, on Dagster. Without the platform: `check` files on this computer. With it: "
                    "`submit` files, then read the RDMT database (RDMT_DATABASE_URL, or the SQLite file in "
                    "RDMT_HOME) with `status`, `history` and `failures`. `demo` runs both arms end to end.",
        epilog="Run `rdmt COMMAND --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check", help="monitor reference files and L2 images on this computer, without the platform",
        description="Run every monitor of each file's data model and its evaluators, with no Dagster and no "
                    "database; files of one series given together are compared in time order (reference files: "
                    "type and detector, by USEAFTER; L2 images: monitor, detector and optical element, by exposure "
                    "start). A verdict an evaluator could not give (no previous file, too little history) is "
                    "'n/e' (not evaluated; \"passed\": null in JSON): neither a pass nor a failure. Exit status: 0 "
                    "nothing failed, 1 some evaluation failed, 2 some file or monitor could not run.")
    check.add_argument("files", nargs="+", metavar="FILE", help="reference files (*.asdf) or L2 images (*_cal.asdf)")
    check.add_argument("--monitors", help="comma-separated monitors to run (default: every monitor of each file)")
    check.add_argument("--catalog", help="astrometric reference catalog (ECSV or Parquet with ra, dec) for the "
                                         "astrometry and psf monitors (default: $RDMT_L2_CATALOG)")
    check.add_argument("--config", help="YAML file overriding the default standards")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--workers", type=int, default=2, help="files read in parallel (default 2)")
    check.set_defaults(func=_check)

    submit = sub.add_parser(
        "submit", help="hand delivered reference files to the platform for monitoring",
        description="Register reference files in the RDMT database (RDMT_DATABASE_URL, or the SQLite file in "
                    "RDMT_HOME) as one delivery, 'submit:<UTC time>'; the registered_files_sensor then requests "
                    "their run. What the Reference File Pipeline calls after CRDS accepts a delivery. Submitting "
                    "the same file again is harmless; a file whose content differs from the one monitored under "
                    "its name is refused (exit 2) unless --replace.")
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

    history = sub.add_parser(
        "history", help="one metric's values over time, with each evaluator's verdict",
        description="One metric's values over time, from the RDMT database (RDMT_DATABASE_URL, or the SQLite file "
                    "in RDMT_HOME): reference files by USEAFTER, L2 images by exposure start (the newest reprocess "
                    "number of each), with the file, detector, value, unit and the verdict of each evaluator of the "
                    "file's latest evaluation: PASS, FAIL or n/e (not evaluated: the evaluator could not run).",
        epilog="example: rdmt history dark_current_mean --detector WFI07 --since 2027-01-01")
    history.add_argument("metric", metavar="METRIC",
                         help="the metric's base name, without the scale (dark_current_mean, num_hot_pix, ...)")
    history.add_argument("--detector", help="only this detector (WFI01..WFI18)")
    history.add_argument("--scale", default="detector", choices=SCALE_CHOICES,
                         help="detector (default), amp or superpixel")
    history.add_argument("--region", type=int,
                         help="one region of the scale: amp 1..32, super-pixel 0..1023 (default: the detector, or "
                              "every region of the scale); the detector is never mixed with super-pixel 0")
    history.add_argument("--since", metavar="YYYY-MM-DD", help="only files observed on or after this day (UTC)")
    history.add_argument("--arm", choices=("reference", "l2"), help="only reference files or only L2 images "
                                                                    "(default both)")
    history_format = history.add_mutually_exclusive_group()
    history_format.add_argument("--json", action="store_true", help="print one JSON document")
    history_format.add_argument("--csv", action="store_true", help="print CSV, one row per value")
    history.set_defaults(func=_history)

    failures = sub.add_parser(
        "failures", help="what failed: per file, metric and evaluator, with the worst value and its limit",
        description="The failed evaluations of each file's latest evaluation, from the RDMT database "
                    "(RDMT_DATABASE_URL, or the SQLite file in RDMT_HOME), one line per file, metric, scale and "
                    "evaluator: how many regions failed, the worst value and the limit it crossed. Verdicts that "
                    "were not given (not evaluated) are not failures.",
        epilog="examples: rdmt failures --delivery roman_0042.pmap;  rdmt failures --since 2027-03-01 --arm l2")
    chosen = failures.add_mutually_exclusive_group()
    chosen.add_argument("--delivery", metavar="ID",
                        help="only the files of one delivery: a CRDS context, 'submit:<UTC time>', a Dagster run id, "
                             "or an L2 batch")
    chosen.add_argument("--since", metavar="YYYY-MM-DD", help="only files that arrived on or after this day (UTC)")
    failures.add_argument("--arm", choices=("reference", "l2"), help="only reference files or only L2 images "
                                                                     "(default both)")
    failures.add_argument("--json", action="store_true", help="print one JSON document")
    failures.set_defaults(func=_failures)

    demo = sub.add_parser(
        "demo", help="both arms end to end through Dagster, on synthetic data",
        description="Synthetic reference deliveries (through a CRDS stand-in on loopback and `rdmt submit`) and "
                    "synthetic L2 images announced through a local S3/SNS/SQS, monitored by the sensors and the "
                    "Dagster daemon; waits for every report and notification, then prints where everything is and "
                    "every failed evaluation.")
    demo.add_argument("--workdir", default="rdmt-demo", help="where everything is written (default ./rdmt-demo)")
    demo.add_argument("--workers", type=int, default=2, help="files measured in parallel in a run (default 2)")
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
