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
    for name in ("RDMT_CRDS_START_CONTEXT", "RDMT_CRDS_MAX_FILES_PER_TICK", "RDMT_CRDS_TICK_BUDGET_SECONDS",
                 "RDMT_CRDS_MAX_ATTEMPTS"):
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
    if isinstance(result, dg.SkipReason):
        return []
    return [key for request in result.dynamic_partitions_requests for key in request.partition_keys]


def test_monitored_types_come_from_the_monitor_registry():
    from crds.roman import FILEKINDS

    from rdmt_dagster.science.monitor import arm_monitors

    assert model_reftype("DarkRefModel") == "dark"
    assert model_reftype("ReadnoiseRefModel") == "readnoise"
    # The reference arm only: the L2 monitors read images, which CRDS does not deliver.
    assert monitored_reftypes() == {model_reftype(m.model) for m in arm_monitors("reference").values()}
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
        # The delivery is the context that brought the file, by the CRDS trigger.
        assert (status["delivery"], status["delivered_by"], status["run_id"]) == (new, "crds", None)
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
    assert status["run_id"] == outcome.run_id and status["delivered_by"] == "crds"
    assert status["delivery"] == run.tags["rdmt/crds_context"]


def run_ranges(result):
    return [(r.tags[RANGE_START], r.tags[RANGE_END], r.tags["rdmt/crds_context"]) for r in result.run_requests]


def test_every_context_between_two_ticks_is_walked(setup):
    """A -> B -> C between two ticks: the files B added and C replaced are monitored too, one run per context."""
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    b = deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    c = deliver(standin, files, ("roman_wfi_dark_0003.asdf", "DARK", "WFI01"),  # replaces 0001
                ("roman_wfi_dark_0004.asdf", "DARK", "WFI02"))  # replaces 0002
    result, cursor = tick(instance, home, cursor)
    names = [f"roman_wfi_dark_000{i}.asdf" for i in (1, 2, 3, 4)]
    assert requested_keys(result) == names
    assert run_ranges(result) == [(names[0], names[1], b), (names[2], names[3], c)]
    assert instance.get_dynamic_partitions(PARTITIONS) == names
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=c)
    database = RDMTConfig(home=str(home)).database()
    assert all(Path(database.file_status(n)["path"]).is_file() for n in names)


def test_the_walk_is_bounded_per_tick_and_kept_in_the_cursor(setup):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    deliver(standin, files, ("roman_wfi_flat_0001.asdf", "FLAT", "WFI01"))  # adds nothing monitored
    last = deliver(standin, files, ("roman_wfi_dark_0003.asdf", "DARK", "WFI01"))
    seen = []
    for _ in range(4):
        result, cursor = tick(instance, home, cursor, max_files=1)
        assert len(requested_keys(result)) <= 1
        seen.append(requested_keys(result))
    assert seen == [["roman_wfi_dark_0001.asdf"], ["roman_wfi_dark_0002.asdf"], ["roman_wfi_dark_0003.asdf"], []]
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=last)
    assert standin.requests.count("get_context_history") == 1  # the walk is read once, then kept in the cursor


def test_a_rollback_still_monitors_the_context_rolled_back(setup):
    """A -> B -> C -> B: C was the default for a while, its file is monitored; B's is not handed off twice."""
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    b = deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"))
    c = deliver(standin, files, ("roman_wfi_dark_0002.asdf", "DARK", "WFI01"))  # replaces 0001
    standin.set_default(b, "rollback")
    result, cursor = tick(instance, home, cursor)
    assert run_ranges(result) == [("roman_wfi_dark_0001.asdf",) * 2 + (b,), ("roman_wfi_dark_0002.asdf",) * 2 + (c,)]
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=b)
    result, _ = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason)


def test_context_steps():
    from rdmt_dagster.sensors.crds import context_steps

    history = ["roman_0001.pmap", "roman_0003.pmap", "roman_0005.pmap", "roman_0003.pmap"]
    assert context_steps(history, "roman_0001.pmap", "roman_0003.pmap") == history[1:]
    assert context_steps(history, "roman_0005.pmap", "roman_0003.pmap") == ["roman_0003.pmap"]
    assert context_steps(history, None, "roman_0003.pmap") == ["roman_0003.pmap"]
    assert context_steps(history, "none", "roman_0003.pmap") == ["roman_0003.pmap"]
    # A start that never was the default is placed by its serial number.
    assert context_steps(history, "roman_0004.pmap", "roman_0003.pmap") == ["roman_0005.pmap", "roman_0003.pmap"]
    # The server's history may not list the newest default yet.
    assert context_steps(history, "roman_0003.pmap", "roman_0006.pmap") == ["roman_0006.pmap"]


def test_a_file_that_cannot_be_fetched_is_recorded_as_an_error_and_does_not_block(setup, monkeypatch):
    standin, home, instance, files = setup
    monkeypatch.setenv("RDMT_CRDS_MAX_ATTEMPTS", "3")
    _, cursor = tick(instance, home)
    b = deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    (standin.reference_dir / "roman_wfi_dark_0001.asdf").unlink()  # published, then gone: HTTP 404
    c = deliver(standin, files, ("roman_wfi_dark_0003.asdf", "DARK", "WFI03"))

    keys, contexts = [], []
    for _ in range(4):
        result, cursor = tick(instance, home, cursor)
        keys.append(requested_keys(result))
        contexts.append(CRDSCursor.parse(cursor).context)
    assert keys == [[], ["roman_wfi_dark_0002.asdf"], ["roman_wfi_dark_0001.asdf"], ["roman_wfi_dark_0003.asdf"]]
    assert contexts[2:] == [b, c]
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=c)

    status = RDMTConfig(home=str(home)).database().file_status("roman_wfi_dark_0001.asdf")
    path = Path(status["path"])
    assert status["status"] == "registered" and path.name == "roman_wfi_dark_0001.asdf" and not path.exists()
    assert [r.tags[RANGE_START] for r in result.run_requests] == ["roman_wfi_dark_0003.asdf"]


def test_a_file_given_up_keeps_a_registration_made_elsewhere(setup, monkeypatch):
    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"))
    (standin.reference_dir / "roman_wfi_dark_0001.asdf").unlink()
    database = RDMTConfig(home=str(home)).database()
    database.register("roman_wfi_dark_0001.asdf", str(files / "roman_wfi_dark_0001.asdf"))  # rdmt submit
    result, cursor = tick(instance, home, cursor, max_attempts=1)
    assert requested_keys(result) == ["roman_wfi_dark_0001.asdf"]
    assert database.file_status("roman_wfi_dark_0001.asdf")["path"] == str(files / "roman_wfi_dark_0001.asdf")


@pytest.mark.slow
def test_the_run_of_a_file_given_up_records_an_error_naming_it(setup, monkeypatch):
    from rdmt_dagster.assets.reference_files import FILES_READABLE
    from rdmt_dagster.definitions import build_definitions
    from rdmt_dagster.synthetic import write_dark

    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    paths = [write_dark(files / f"roman_wfi_dark_000{i}.asdf", f"WFI0{i}", i, "2027-01-01T00:00:00") for i in (1, 2)]
    standin.deliver(paths)
    good, gone = paths[0].name, paths[1].name
    (standin.reference_dir / gone).unlink()
    result, cursor = tick(instance, home, cursor, max_attempts=1)
    (run,) = result.run_requests
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (good, gone)

    monkeypatch.setenv("RDMT_HOME", str(home))
    monkeypatch.delenv("RDMT_DATABASE_URL", raising=False)
    monkeypatch.delenv("RDMT_NOTIFY_CHANNELS", raising=False)
    defs = build_definitions()
    outcome = defs.resolve_job_def("monitor_reference_files").execute_in_process(
        instance=instance, tags=run.tags, raise_on_error=False)
    readable = {e.asset_check_evaluation_data.partition: e.asset_check_evaluation_data
                for e in outcome.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.asset_check_evaluation_data.check_name == FILES_READABLE}
    assert {name for name, ev in readable.items() if not ev.passed} == {gone, None}  # None: the run's verdict
    assert gone in readable[gone].metadata["error"].value
    database = RDMTConfig(home=str(home)).database()
    status = database.file_status(gone)
    assert status["status"] == "error" and gone in status["error"]
    assert database.file_status(good)["status"] == "ok"
    assert gone in (home / "notifications.log").read_text()


CORRUPT_CURSORS = [
    "not json {",
    '"roman_0002.pmap"',
    "42",
    "[1, 2]",
    '{"context": 5}',
    '{"context": "roman_0002.pmap", "target": "roman_0002.pmap", "pending": "roman_wfi_dark_0001.asdf"}',
    '{"context": "roman_0002.pmap", "target": "roman_0002.pmap", "pending": null}',
    '{"context": "roman_0002.pmap", "target": null, "pending": ["roman_wfi_dark_0001.asdf"]}',
    '{"context": "roman_0002.pmap", "target": "roman_0002.pmap", "pending": ["../../etc/passwd"]}',
    '{"context": "roman_0002.pmap", "target": "roman_0002.pmap", "pending": ["roman_wfi_dark_0001.asdf"], '
    '"attempts": {"roman_wfi_dark_0001.asdf": "many"}}',
    '{"context": "roman_0002.pmap", "steps": "roman_0003.pmap"}',
]


@pytest.mark.parametrize("text", CORRUPT_CURSORS)
def test_corrupt_cursor_is_rejected_when_read(text):
    from rdmt_dagster.sensors.crds import CursorError

    with pytest.raises(CursorError):
        CRDSCursor.parse(text)


@pytest.mark.parametrize("text", CORRUPT_CURSORS)
def test_corrupt_cursor_is_rebuilt_without_skipping_files_registered_but_not_monitored(setup, text, capsys):
    from rdmt_dagster.science.metrics import FileInfo, MetricSet

    standin, home, instance, files = setup
    _, cursor = tick(instance, home)
    b = deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"), ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    tick(instance, home, cursor)  # both registered and handed off; 0002 has been monitored since
    database = RDMTConfig(home=str(home)).database()
    database.write_metrics(MetricSet(FileInfo("roman_wfi_dark_0002.asdf", "", ""), "", error="measured"))
    capsys.readouterr()

    result, cursor = tick(instance, home, text)
    # 0001 gets its run again (it is a partition already), 0002 does not.
    assert requested_keys(result) == [] and run_ranges(result) == [("roman_wfi_dark_0001.asdf",) * 2 + (b,)]
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=b)
    assert "invalid cursor" in capsys.readouterr().err
    result, _ = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason)


def test_corrupt_cursor_with_a_start_context_walks_again_from_it(setup, monkeypatch):
    from rdmt_dagster.science.metrics import FileInfo, MetricSet

    standin, home, instance, files = setup
    monkeypatch.setenv("RDMT_CRDS_START_CONTEXT", "none")
    deliver(standin, files, ("roman_wfi_dark_0001.asdf", "DARK", "WFI01"))
    result, cursor = tick(instance, home)
    assert requested_keys(result) == ["roman_wfi_dark_0001.asdf"]
    RDMTConfig(home=str(home)).database().write_metrics(
        MetricSet(FileInfo("roman_wfi_dark_0001.asdf", "", ""), "", error="measured"))
    current = deliver(standin, files, ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    result, cursor = tick(instance, home, '{"pending": 7}')
    assert requested_keys(result) == ["roman_wfi_dark_0002.asdf"]  # 0001 was monitored already
    assert CRDSCursor.parse(cursor) == CRDSCursor(context=current)


def test_a_server_down_during_a_rebuild_leaves_the_cursor_alone(setup):
    standin, home, instance, files = setup
    standin.stop()
    result, cursor = tick(instance, home, "garbage")
    assert isinstance(result, dg.SkipReason) and cursor == "garbage"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://user:s3cret@crds.example.org:8443/roman/?token=abc123#frag", "https://crds.example.org:8443/roman/"),
    ("https://crds.example.org", "https://crds.example.org"),
    ("http://:s3cret@[::1]:8000/x?sig=abc123", "http://[::1]:8000/x"),
    ("user:s3cret@crds.example.org/x?token=abc123", "//crds.example.org/x"),
])
def test_redact(url, expected):
    from rdmt_dagster.sensors.crds import _redact

    assert _redact(url) == expected


def test_server_url_credentials_are_never_logged(setup, monkeypatch, capsys):
    from rdmt_dagster.sensors.crds import _short

    standin, home, instance, files = setup
    url = f"http://crds:s3cret@localhost:{standin.port}/?token=abc123"
    monkeypatch.setenv("CRDS_SERVER_URL", url)
    result, _ = tick(instance, home)
    logged = capsys.readouterr().err
    assert f"CRDS server http://localhost:{standin.port}/ unavailable" in logged
    for text in (logged, result.skip_message):
        assert "s3cret" not in text and "abc123" not in text
    # Errors of the client may quote a URL, or a piece of the configured one.
    error = OSError(f"Failed downloading from url '{url}x.asdf': nonnumeric port: 's3cret@localhost'")
    assert "s3cret" not in _short(error) and "abc123" not in _short(error)


def test_the_context_history_lists_the_defaults_in_order(setup, tmp_path):
    """What the walk reads: contexts that were the default, not every context written, rollbacks included."""
    standin, home, instance, files = setup
    first = standin.default_context
    quiet = standin.deliver([small_reference(files / "roman_wfi_dark_0001.asdf")], make_default=False)
    second = deliver(standin, files, ("roman_wfi_dark_0002.asdf", "DARK", "WFI02"))
    standin.set_default(quiet, "late")
    standin.set_default(second, "back")
    client = crds_module.CRDSClient(standin.url, str(tmp_path / "crds_cache"))
    assert client.history() == [first, second, quiet, second]
