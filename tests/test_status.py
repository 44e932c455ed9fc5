"""``rdmt status``: both arms' files and the rejected notices from one database."""

from __future__ import annotations

import json
from datetime import datetime

from rdmt_dagster.cli import main
from rdmt_dagster.l2.notices import L2Notice
from rdmt_dagster.science.metrics import MetricSet, ReferenceFileInfo
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.storage.l2_ledger import L2Ledger

L2_NAME = "r0000101001001001001_01101_0001_WFI01_cal.asdf"


def test_status_lists_both_arms_and_rejected_notices(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RDMT_HOME", str(tmp_path))
    monkeypatch.delenv("RDMT_DATABASE_URL", raising=False)
    database = Database(sqlite_url(tmp_path / "rdmt.db"))
    database.upgrade()
    database.register("roman_wfi_dark_0001.asdf", "/in/roman_wfi_dark_0001.asdf")
    info = ReferenceFileInfo("roman_wfi_dark_0001.asdf", "/in/roman_wfi_dark_0001.asdf", "dark", "WFI01",
                             datetime(2027, 1, 1))
    database.write_metrics(MetricSet(info, "1.0.0", error="roman_wfi_dark_0001.asdf: truncated"))
    ledger = L2Ledger(database)
    notice = L2Notice("roman-archive", f"wfi/{L2_NAME}", L2_NAME, checksum="a")
    ledger.record_notices([notice], "m1")
    ledger.record_notices([L2Notice("roman-archive", f"wfi/{L2_NAME}", L2_NAME, reprocessing="reprocessed", checksum="b")], "m2")
    ledger.record_rejected("m3", "body is not JSON", "garbage")

    assert main(["status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    files = {(f["file"], f["reprocess_number"]): f for f in doc["files"]}
    ref = files[("roman_wfi_dark_0001.asdf", 0)]
    assert ref["arm"] == "reference" and ref["status"] == "error" and "truncated" in ref["error"]
    assert ref["received_at"].endswith("Z") and ref["measured_at"].endswith("Z")
    assert files[(L2_NAME, 0)]["arm"] == "l2" and files[(L2_NAME, 1)]["status"] == "pending"
    assert files[(L2_NAME, 1)]["measured_at"] is None
    assert set(ref) == {"file", "arm", "status", "error", "reprocess_number", "n_failed", "received_at", "measured_at"}
    assert doc["rejected_messages"] == [{"message_id": "m3", "reason": "body is not JSON",
                                         "received_at": doc["rejected_messages"][0]["received_at"]}]
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "3 file(s)" in table and "rejected notices:" in table and L2_NAME in table
