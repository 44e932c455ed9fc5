"""The stand-alone ``rdmt check`` command and the code location's loading."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def rdmt(*args, cwd=None, env=None):
    return subprocess.run([str(BIN / "rdmt"), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_check_json_document(dark_pair):
    proc = rdmt("check", "--json", dark_pair[1], dark_pair[0])
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    files = {Path(f["file"]).name: f for f in doc["files"]}
    later = files[dark_pair[1].name]
    assert later["status"] == "ok" and later["monitor"] == "dark" and later["error"] is None
    rows = {(m["metric"], m["region"]): m for m in later["metrics"]}
    assert len(rows) == 8 * 1057
    amp5 = rows[("amp_dark_current_mean", 5)]
    assert amp5["scale"] == "amp" and amp5["unit"] == "DN / s"
    assert set(amp5["evaluations"]) == {"mission", "soc", "change", "trend"}
    assert amp5["evaluations"]["change"]["passed"] is False
    assert amp5["evaluations"]["change"]["threshold"] == 0.11
    assert amp5["evaluations"]["change"]["compared_with"] == dark_pair[0].name
    assert rows[("amp_dark_current_mean", 1)]["evaluations"]["change"]["passed"] is True
    # The first file has no previous file and no history: change and trend give no verdict (null), which
    # is neither a pass nor a failure; the second has one earlier file, too few for a trend.
    first = files[dark_pair[0].name]
    relative = [e for m in first["metrics"] for name, e in m["evaluations"].items() if name in ("change", "trend")]
    assert len(relative) == 2 * 8 * 1057 and all(e["passed"] is None for e in relative)
    assert all(e["note"] == "no previous file" for m in first["metrics"] for e in [m["evaluations"]["change"]])
    assert first["n_not_evaluated"] == len(relative) and first["n_failed"] == 0
    assert all(m["evaluations"]["trend"]["passed"] is None for m in later["metrics"])
    assert all(m["evaluations"]["mission"]["passed"] in (True, False) for m in later["metrics"])
    assert later["n_not_evaluated"] == 8 * 1057


def test_check_table_and_exit_codes(tmp_path, dark_normal_pair):
    proc = rdmt("check", *dark_normal_pair)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "detector_dark_current_percentile_99" in proc.stdout and "0 failed evaluation(s)" in proc.stdout
    # The first file's change and trend could not run: "n/e", counted apart from passes and failures.
    first_table = proc.stdout.split("\n\n")[0]
    row = next(line for line in first_table.splitlines() if "detector_dark_current_mean " in line)
    assert row.split()[-4:] == ["n/e", "0.11", "n/e", "5"] and "PASS" in row
    assert f"0 failed evaluation(s), {2 * 8 * 1057} not evaluated (n/e)" in first_table
    missing = tmp_path / "nowhere.asdf"
    proc = rdmt("check", "--json", dark_normal_pair[0], missing)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    bad = [f for f in doc["files"] if f["status"] == "error"][0]
    assert "nowhere.asdf" in bad["error"] and bad["metrics"] == []
    config = tmp_path / "strict.yaml"
    config.write_text("dark:\n  metrics:\n    dark_current_mean:\n      soc: {max: 0.001}\n")
    proc = rdmt("check", "--config", config, dark_normal_pair[0])
    assert proc.returncode == 1 and "FAIL" in proc.stdout


@pytest.mark.slow
def test_definitions_validate(tmp_path):
    proc = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "rdmt_dagster.definitions"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "RDMT_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_submit_registers_once_and_names_a_missing_file(tmp_path, dark_normal_pair):
    from rdmt_dagster.storage.database import Database, sqlite_url

    env = {"RDMT_HOME": str(tmp_path)}
    first = rdmt("submit", *dark_normal_pair, env=env)
    again = rdmt("submit", dark_normal_pair[0], env=env)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert f"registered {dark_normal_pair[0].name}" in first.stdout
    database = Database(sqlite_url(tmp_path / "rdmt.db"))
    assert database.count_rows("reference_file") == 2
    assert database.paths([dark_normal_pair[1].name]) == {dark_normal_pair[1].name: str(dark_normal_pair[1])}
    missing = rdmt("submit", tmp_path / "absent_dark.asdf", env=env)
    assert missing.returncode == 2 and "absent_dark.asdf" in missing.stderr


def test_every_command_says_what_it_does():
    from rdmt_dagster.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0]
    described = {action.dest: action.help for action in commands._choices_actions}
    assert set(described) == {"check", "submit", "status", "history", "failures", "demo"}
    overview = rdmt("--help").stdout
    for name, text in described.items():
        assert text and text.split()[0] in overview, name
        sub = commands.choices[name]
        assert sub.description and len(sub.description) > 80, name  # more than a line: what it does and reads
    assert "not evaluated" in commands.choices["check"].description
    assert "RDMT_DATABASE_URL" in commands.choices["history"].description
    assert "n/e" in commands.choices["history"].description
    assert "not evaluated" in commands.choices["failures"].description
    assert "submit:<UTC time>" in commands.choices["submit"].description
