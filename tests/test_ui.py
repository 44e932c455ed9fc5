"""The Dagster UI over an instance where a daemon monitored a delivery: what a person sees tells the truth.

A Dagster daemon (with the demo's workspace.yaml) monitors two darks handed
over with ``rdmt submit``, one of them failing; a dagster-webserver (with the
repository's workspace.yaml) serves the instance, and a headless Chromium
opens the asset graph, the failing partition, the check, the sensor, the runs
list and the report. Each page must show the failing file, its metric and its
value (read from the RDMT database); every page is kept as a screenshot in
``RDMT_UI_SHOTS`` (default ``/tmp/shots``), ``ui_<page>.png``.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from rdmt_dagster.definitions import REFERENCE_FILE_JOB, build_definitions
from rdmt_dagster.resources import RDMTConfig

from .browser import Browser, require_chromium
from .conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Screenshots of every page the tests look at, to be looked at by a person too.
SHOTS = Path(os.environ.get("RDMT_UI_SHOTS", "/tmp/shots"))


def daemon_env(home: Path) -> dict:
    """The environment of the daemon and the web server: one RDMT home, one Dagster instance, 1 s sensor ticks."""
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "RDMT_HOME": str(home),
           "RDMT_SENSOR_INTERVAL": "1", "RDMT_HANDOFF_GRACE_SECONDS": "0"}
    for name in ("CRDS_SERVER_URL", "RDMT_L2_QUEUE_URL", "RDMT_DATABASE_URL", "RDMT_REPORT_BASE_URL",
                 "RDMT_NOTIFY_CHANNELS"):
        env.pop(name, None)
    return env


def monitor_with_daemon(home: Path, deliveries, timeout: float = 600) -> None:
    """Hand each delivery over with ``rdmt submit`` and let a Dagster daemon monitor it, as the demo does.

    The daemon loads the code location from the demo's ``workspace.yaml`` and
    the web server of the tests from the repository's: the sensor ticks and
    runs it records must show on the web server's pages.
    """
    from rdmt_dagster import demo
    from rdmt_dagster.submission import submit

    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(demo.DAGSTER_YAML)
    rdmt = RDMTConfig(home=str(home))
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        with demo.Daemon(home, daemon_env(home)) as daemon:
            for paths in deliveries:
                names = submit(list(paths), rdmt)
                done = demo.wait_until_monitored(names, rdmt.database(), home / "reports", instance, daemon, timeout)
                assert done, (home / "logs" / "dagster-daemon.log").read_text()[-3000:]
    finally:
        instance.dispose()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory, dark_pair, dark_normal_pair):
    """An instance where a daemon monitored two deliveries of two darks each; one dark of the second fails."""
    home = tmp_path_factory.mktemp("ui_home")
    monitor_with_daemon(home, [(dark_pair[0], dark_normal_pair[0]), (dark_pair[1], dark_normal_pair[1])])
    return home


@pytest.fixture(scope="module")
def webserver(demo_home):
    port = free_port()
    env = daemon_env(demo_home)
    log = open(demo_home / "webserver.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((demo_home / "webserver.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as r:
                    if r.status == 200 and _location_loaded(url):
                        break
            except OSError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError("dagster-webserver did not come up in 180 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        payload = json.loads(r.read())
    assert "errors" not in payload, payload
    return payload["data"]


def _location_loaded(url: str) -> bool:
    data = graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
    entries = data["workspaceOrError"]["locationEntries"]
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def expected_definitions():
    defs = build_definitions(RDMTConfig(home="unused"))
    graph = defs.resolve_asset_graph()
    assets = {"/".join(k.path) for k in graph.get_all_asset_keys()}
    checks = {(("/".join(k.asset_key.path)), k.name) for k in graph.asset_check_keys}
    sensors = {s.name for s in defs.resolve_all_sensor_defs()} if hasattr(defs, "resolve_all_sensor_defs") else {
        s.name for s in (defs.sensors or [])}
    return assets, checks, sensors


def test_graphql_lists_every_asset_check_and_sensor(webserver):
    assets, checks, sensors = expected_definitions()
    data = graphql(webserver, """
        { assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }
    """)
    got_assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    got_checks = {("/".join(n["assetKey"]["path"]), c["name"])
                  for n in data["assetNodes"] for c in (n["assetChecksOrError"].get("checks") or [])}
    assert assets and assets <= got_assets
    assert checks and checks <= got_checks
    repos = graphql(webserver, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name sensors { name } jobs { name } } } } }")
    nodes = repos["repositoriesOrError"]["nodes"]
    got_sensors = {s["name"] for n in nodes for s in n["sensors"]}
    assert sensors <= got_sensors
    assert REFERENCE_FILE_JOB in {j["name"] for n in nodes for j in n["jobs"]}
    runs = graphql(webserver, "{ runsOrError { ... on Runs { results { jobName status } } } }")
    assert {"jobName": REFERENCE_FILE_JOB, "status": "SUCCESS"} in runs["runsOrError"]["results"]


def chromium() -> str:
    return require_chromium("the UI screenshot test")


def test_sensor_ticks_and_runs_of_the_daemon_show_on_the_web_server(webserver):
    """The daemon (demo workspace.yaml) and the web server (repository's) name the code location alike."""
    data = graphql(webserver, """{ sensorOrError(sensorSelector: {repositoryLocationName: "rdmt",
        repositoryName: "__repository__", sensorName: "registered_files_sensor"}) { ... on Sensor {
        sensorState { ticks(limit: 200) { status runIds cursor } } } } }""")
    ticks = data["sensorOrError"]["sensorState"]["ticks"]
    launched = [t for t in ticks if t["runIds"]]
    assert [(t["status"], t["cursor"]) for t in launched] == [("SUCCESS", "4"), ("SUCCESS", "2")]  # newest first


@pytest.fixture(scope="module")
def failing(demo_home, dark_pair):
    """The failing file and its detector-level dark_current_mean failure, read from the RDMT database."""
    database = RDMTConfig(home=str(demo_home)).database()
    name = dark_pair[1].name
    rows = database.failed_evaluations([name])
    mean = next(r for r in rows if r["metric"] == "detector_dark_current_mean" and r["evaluator"] == "change")
    return dict(name=name, n_failed=len(rows), value=f"{mean['value']:.4g}", previous=f"{mean['reference']:.4g}",
                amps=sorted(r["region"] for r in rows if r["metric"] == "amp_dark_current_mean"), rows=rows)


@pytest.fixture(scope="module")
def browser():
    chromium()
    with Browser() as b:
        yield b


def look(browser: Browser, name: str, *needles: str) -> str:
    """Wait until the page shows every needle, keep a screenshot as ``ui_<name>.png``; the page text."""
    text = browser.wait_for_text(*needles)
    browser.screenshot(SHOTS / f"ui_{name}.png")
    return text


def test_the_asset_graph_shows_the_failing_check(webserver, browser, failing):
    browser.open(f"{webserver}/locations/rdmt/asset-groups/reference_files")
    text = look(browser, "graph", "reference_files", "reference_file_metrics", "reference_file_evaluations",
                "reference_file_reports", "reference_file_notifications", "1 / 2 Passed")
    # Every asset has every partition, reference_files too (each file is recorded when first measured).
    assert text.count("% filled") == text.count("100% filled") == 5
    browser.click_text("reference_file_evaluations")
    browser.wait_for_text("View in Asset Catalog", "evaluations_pass")
    browser.scroll_to("View all check details")
    text = look(browser, "graph_selected", "View all check details")
    checks = text[text.index("View all check details"):]
    assert checks.index("evaluations_pass") < checks.index("Failed") < checks.index("files_readable")


def test_the_failing_partition_shows_its_file_metric_value_and_limit(webserver, browser, failing):
    name = failing["name"]
    browser.open(f"{webserver}/assets/reference_file_evaluations?view=partitions&partition={name}")
    text = look(browser, "partition", name, "failed_evaluations", str(failing["n_failed"]), "first_failure",
                f"detector dark_current_mean [change]: {failing['value']} DN / s",
                f"limit ±11% of {failing['previous']}", f"reports/{name}/report.html")
    assert "run_files" not in text  # no figure of the whole run poses as the file's
    browser.click_text("[Show Markdown]")
    amps = ", ".join(map(str, failing["amps"]))
    look(browser, "partition_table", f"{len(failing['amps'])} of 32 amps ({amps})", failing["value"])


def test_the_check_page_shows_the_runs_verdict_and_each_files_result(webserver, browser, failing):
    name = failing["name"]
    browser.open(f"{webserver}/assets/reference_file_evaluations?view=checks&checkDetail=evaluations_pass")
    look(browser, "check", "Latest execution", "Failed", f"1 of 2 files of the run failed: WFI03 {name}",
         f"detector dark_current_mean [change]: {failing['value']} DN / s", "failing_metrics")
    browser.click_text("Partitions", last=True)
    look(browser, "check_partitions", "Failed (1)", "Passed (3)")
    browser.click_text(name, last=True)
    look(browser, "check_partition", "Latest execution", f"WFI03 {name}: {failing['n_failed']} failed evaluations",
         f"{failing['value']} DN / s", "failing_metrics_json")


def test_the_sensor_page_shows_its_tick_and_the_failures_its_run_found(webserver, browser, failing):
    browser.open(f"{webserver}/locations/rdmt/sensors/registered_files_sensor")
    browser.wait_for_text("registered_files_sensor", "Running", "Cursor", "All ticks")
    # Ticks every second: the two that requested a run are among many that found nothing new.
    browser.click_text("All ticks")
    browser.click_text("Requested", last=True)
    text = look(browser, "sensor", "1 run requested", "(2 partitions created)")
    assert text.count("1 run requested") >= 2  # one tick per delivery
    browser.click_text("Runs")
    look(browser, "sensor_runs", "rdmt/failures: true", "rdmt/failures: false",
         f"rdmt/failed_evaluations: {failing['n_failed']}",
         f"rdmt/failing_files: {failing['name']}",
         f"rdmt/first_failure: WFI03 {failing['name']}: detector dark_current_mean [change]: {failing['value']}")


def test_the_runs_list_filters_on_failures(webserver, browser, failing):
    browser.open(f"{webserver}/runs?q%5B0%5D=tag%3Ardmt%2Ffailures%3Dtrue")
    text = look(browser, "runs", "monitor_reference_files", "registered_files_sensor",
                f"rdmt/failing_files: {failing['name']}")
    assert "rdmt/failures: false" not in text  # the clean delivery's run is filtered out


def test_reference_files_shows_each_delivered_file(webserver, browser, failing, dark_pair):
    name = failing["name"]
    browser.open(f"{webserver}/assets/reference_files?view=partitions&partition={name}")
    text = look(browser, "reference_files", name, str(dark_pair[1]), "DARK", "WFI03", "2027-02-01T00:00:00",
                "sha256")
    assert "Never materialized" not in text


def test_the_report_shows_the_failure(demo_home, browser, failing):
    name = failing["name"]
    browser.open((demo_home / "reports" / name / "report.html").as_uri())
    look(browser, "report", name, "WFI03", "dark_current_mean", failing["value"])
