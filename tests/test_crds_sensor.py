"""The CRDS sensor: real client, real protocol, the stand-in server on loopback."""

import json
from pathlib import Path

import dagster as dg
import pytest

from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.crds_standin import CRDSStandIn
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.sensors import crds as crds_module
from rdmt_dagster.sensors import crds_sensor
from rdmt_dagster.sensors.crds import CRDSCursor, crds_tick, model_reftype, monitored_reftypes
from rdmt_dagster.sensors.handoff import RANGE_END, RANGE_START

from .test_crds_standin import small_reference

PARTITIONS = reference_file_partitions.name


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(stand-in, RDMT home, Dagster instance, files folder)."""
    from crds.core import utils

    standin = CRDSStandIn(tmp_path / "server").start()
    monkeypatch.setenv("CRDS_SERVER_URL", standin.url)
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "crds_cache"))
    monkeypatch.setenv("CRDS_CLIENT_TIMEOUT_SECONDS", "10")
    for name in ("RDMT_CRDS_START_CONTEXT", "RDMT_CRDS_MAX_FILES_PER_TICK", "RDMT_CRDS_TICK_BUDGET_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    # Only darks are monitored here, whatever monitors exist, so that flats stand for "not monitored".
    monkeypatch.setattr(crds_module, "monitored_reftypes", lambda: {"dark"})
    files = tmp_path / "files"
    files.mkdir()
    with dg.instance_for_test() as instance:
        yield standin, tmp_path / "home", instance, files
    standin.close()
    utils.clear_function_caches()


def tick(instance, home, cursor=None, **limits):
    """Evaluate the sensor as the daemon would (fresh context), applying its partition requests."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"rdmt": RDMTConfig(home=str(home))})
    result = crds_tick(context, context.resources.rdmt, **limits) if limits else crds_sensor(context)
    if isinstance(result, dg.SkipReason):
        return result, cursor
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result, result.cursor if result.cursor is not None else cursor


def deliver(standin, files, *specs):
    """Deliver small files: specs are (name, reftype, detector[, instrument])."""
    paths = []
    for name, reftype, detector, *instrument in specs:
        paths.append(small_reference(files / name, reftype=reftype, detector=detector,
                                     instrument=(instrument or ["WFI"])[0]))
    return standin.deliver(paths)


def requested_keys(result):
    return [key for request in result.dynamic_partitions_requests for key in request.partition_keys]


def test_monitored_types_come_from_the_monitor_registry():
    from crds.roman import FILEKINDS

    from rdmt_dagster.science.monitor import registry

    assert model_reftype("DarkRefModel") == "dark"
    assert model_reftype("ReadnoiseRefModel") == "readnoise"
    assert monitored_reftypes() == {model_reftype(m.model) for m in registry().values()}
    assert model_reftype("SuperbiasRefModel") == "bias"  # the schema's reftype, not the class name
    assert "dark" in monitored_reftypes()
    assert monitored_reftypes() <= set(FILEKINDS) | {"bias"}  # (crds 14.0 has no roman bias rmap)


def test_new_context_hands_off_only_its_new_monitored_wfi_files(setup):
    standin, home, instance, files = setup
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))

    result, cursor = tick(instance, home)  # no cursor: the current context is the baseline
    assert result.run_requests == [] and json.loads(cursor)["context"] == standin.default_context

    new = deliver(standin, files,
                  ("roman_wfi_dark_0003.asdf", "DARK", "WFI01"),   # replaces 0001 for WFI01
                  ("roman_wfi_dark_0004.asdf", "DARK", "WFI03"),
                  ("roman_wfi_flat_0001.asdf", "FLAT", "WFI01"),   # not monitored
                  ("roman_all_dark_0001.asdf", "DARK", "WFI01", "ALL"))  # other instrument
    result, cursor = tick(instance, home, cursor)
    expected = ["roman_wfi_dark_0003.asdf", "roman_wfi_dark_0004.asdf"]
    assert requested_keys(result) == expected
    assert len(result.run_requests) == 1
    run = result.run_requests[0]
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == tuple(expected)
    assert instance.get_dynamic_partitions(PARTITIONS) == expected
    state = CRDSCursor.parse(cursor)
    assert (state.context, state.target, state.pending) == (new, None, [])

    database = RDMTConfig(home=str(home)).database()
    for name in expected:
        status = database.file_status(name)
        assert status["status"] == "registered"
        path = Path(status["path"])
        assert path.is_file() and path.is_relative_to(home.parent / "crds_cache")
        assert path.read_bytes() == (files / name).read_bytes()
    assert database.file_status("roman_wfi_dark_0001.asdf") is None
    assert database.file_status("roman_wfi_flat_0001.asdf") is None
    assert database.file_status("roman_all_dark_0001.asdf") is None

    # A daemon restart: a new context object with the stored cursor finds nothing,
    # at the cost of one JSON-RPC call.
    before = len(standin.requests)
    result, cursor2 = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason) and cursor2 == cursor
    assert standin.requests[before:] == ["get_default_context"]


def test_start_context_none_takes_every_monitored_file(setup, monkeypatch):
    standin, home, instance, files = setup
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_flat_0001.asdf", "FLAT", "WFI01"))
    monkeypatch.setenv("RDMT_CRDS_START_CONTEXT", "none")
    result, _ = tick(instance, home)
    assert requested_keys(result) == ["roman_wfi_dark_0001.asdf"]


def test_file_already_a_partition_gets_its_own_run(setup):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    instance.add_dynamic_partitions(PARTITIONS, ["other.asdf", "roman_wfi_dark_0002.asdf"])
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    result, _ = tick(instance, home, cursor)
    assert requested_keys(result) == ["roman_wfi_dark_0001.asdf"]
    ranges = sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests)
    assert ranges == [("roman_wfi_dark_0001.asdf",) * 2, ("roman_wfi_dark_0002.asdf",) * 2]
    assert len({r.run_key for r in result.run_requests}) == 2


@pytest.mark.parametrize("failure", ["down", "unavailable", "garbage"])
def test_server_failures_are_retried_without_losing_files(setup, failure):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"))

    if failure == "down":
        standin.stop()
    else:
        standin.mode = failure
    result, cursor_after = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason) and "unavailable" in result.skip_message
    assert cursor_after == cursor

    standin.start()
    standin.mode = "ok"
    result, cursor = tick(instance, home, cursor)
    assert requested_keys(result) == ["roman_wfi_dark_0001.asdf"]


def test_garbage_downloads_are_not_registered_and_retried(setup):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    context = deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"),
                      ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    result, cursor = tick(instance, home, cursor, max_files=0)  # compare contexts, fetch nothing
    assert result.run_requests == []
    assert CRDSCursor.parse(cursor).pending == ["roman_wfi_dark_0001.asdf", "roman_wfi_dark_0002.asdf"]

    standin.mode = "garbage_files"  # sha1sum mismatch on download
    result, cursor = tick(instance, home, cursor)
    state = CRDSCursor.parse(cursor)
    assert result.run_requests == [] and state.target == context and len(state.pending) == 2
    assert state.attempts == {"roman_wfi_dark_0001.asdf": 1}
    database = RDMTConfig(home=str(home)).database()
    assert database.file_status("roman_wfi_dark_0001.asdf") is None
    cache = home.parent / "crds_cache"
    assert not list(cache.rglob("*.asdf"))  # the corrupted copy was removed

    standin.mode = "ok"
    result, cursor = tick(instance, home, cursor)
    assert sorted(requested_keys(result)) == ["roman_wfi_dark_0001.asdf", "roman_wfi_dark_0002.asdf"]
    assert CRDSCursor.parse(cursor).context == context


def test_per_tick_bound_defers_the_rest(setup):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    names = [f"roman_wfi_dark_000{i}.asdf" for i in range(1, 6)]
    context = deliver(standin, files, *[(n, "DARK", f"WFI0{i}") for i, n in enumerate(names, 1)])
    seen = []
    for expected in (2, 2, 1):
        result, cursor = tick(instance, home, cursor, max_files=2)
        keys = requested_keys(result)
        assert len(keys) == expected
        assert (result.run_requests[0].tags[RANGE_START], result.run_requests[0].tags[RANGE_END]) == (keys[0], keys[-1])
        seen += keys
    assert seen == names and instance.get_dynamic_partitions(PARTITIONS) == names
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=context)


def test_time_budget_defers_the_rest(setup):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    deliver(standin, files, *[(f"roman_wfi_dark_000{i}.asdf", "DARK", f"WFI0{i}") for i in (1, 2, 3)])
    standin.delay = 0.2  # every answer takes 0.2 s: a tick has time for one download only
    counts = []
    while not counts or CRDSCursor.parse(cursor).target:
        result, cursor = tick(instance, home, cursor, budget_seconds=0.3)
        counts.append(len(requested_keys(result)))
    assert counts == [0, 1, 1, 1]  # the first tick spent its budget comparing the contexts


@pytest.mark.slow
def test_requested_run_measures_the_fetched_file(setup, monkeypatch):
    """End to end: CRDS delivery -> sensor -> the job run it requests -> measured from the CRDS cache."""
    from rdmt_dagster.definitions import build_definitions
    from rdmt_dagster.synthetic import write_dark

    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    path = write_dark(files / "roman_wfi_dark_0001.asdf", "WFI05", 1, "2027-01-01T00:00:00")
    standin.deliver([path])
    result, cursor = tick(instance, home, cursor)
    (run,) = result.run_requests

    monkeypatch.setenv("RDMT_HOME", str(home))
    monkeypatch.delenv("RDMT_DATABASE_URL", raising=False)
    defs = build_definitions()
    outcome = defs.resolve_job_def("monitor_reference_files").execute_in_process(
        instance=instance, tags=run.tags, raise_on_error=False)
    assert outcome.success
    status = RDMTConfig(home=str(home)).database().file_status("roman_wfi_dark_0001.asdf")
    assert status["status"] == "ok" and status["detector"] == "WFI05"
