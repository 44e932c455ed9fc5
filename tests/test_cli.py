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
    first = files[dark_pair[0].name]
    assert all(m["evaluations"]["change"]["passed"] for m in first["metrics"])


def test_check_table_and_exit_codes(tmp_path, dark_normal_pair):
    proc = rdmt("check", *dark_normal_pair)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "detector_dark_current_percentile_99" in proc.stdout and "0 failed evaluation(s)" in proc.stdout
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
