"""Worker processes see the caller's environment at the time of the call, not the forkserver's."""

import os

from rdmt_dagster.parallel import process_map


def test_workers_see_the_environment_as_it_is_now(monkeypatch):
    monkeypatch.setenv("RDMT_PROBE", "first")
    assert process_map(os.getenv, ["RDMT_PROBE"] * 2, 2) == ["first", "first"]  # starts the forkserver
    monkeypatch.setenv("RDMT_PROBE", "second")  # e.g. another test's moto endpoint
    assert process_map(os.getenv, ["RDMT_PROBE"] * 2, 2) == ["second", "second"]
