"""One code-location name everywhere, and definitions that follow the configured notification channels.

Sensor ticks, cursors and runs are stored under the code location's name; a
daemon and a web server that name it differently show each other nothing.
"""

import tomllib
from pathlib import Path

import dagster as dg
import yaml

from rdmt_dagster import demo
from rdmt_dagster.definitions import build_definitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.resources.notifications import NotificationsConfig

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "rdmt"


def _workspace_locations(text: str) -> list[tuple[str, str]]:
    entries = yaml.safe_load(text)["load_from"]
    return [(e["python_module"]["module_name"], e["python_module"]["location_name"]) for e in entries]


def test_every_way_of_loading_the_code_names_the_same_location():
    expected = [("rdmt_dagster.definitions", LOCATION)]
    assert _workspace_locations((ROOT / "workspace.yaml").read_text()) == expected  # dagster-webserver -w, daemon
    assert _workspace_locations(demo.WORKSPACE_YAML) == expected  # rdmt demo's daemon
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]  # `dagster dev` (no -w)
    assert (tool["module_name"], tool["code_location_name"]) == expected[0]
    for config in (ROOT / "deploy").rglob("*.y*ml"):
        data = yaml.safe_load(config.read_text()) or {}
        if "load_from" in data:
            assert _workspace_locations(config.read_text()) == expected, config


def test_notification_kinds_name_the_configured_channels():
    for channels, kinds in ((["log"], {"log"}), (["log", "slack", "email"], {"log", "slack", "email"}),
                            (["sns", "pager"], {"sns"})):
        defs = build_definitions(RDMTConfig(home="unused"), NotificationsConfig(channels=channels))
        graph = defs.resolve_asset_graph()
        for key in ("reference_file_notifications", "l2_notifications"):
            assert graph.get(dg.AssetKey(key)).kinds == kinds, (channels, key)


def test_definitions_load_without_any_environment(monkeypatch):
    for name in ("RDMT_NOTIFY_CHANNELS", "RDMT_REPORT_BASE_URL", "RDMT_HOME"):
        monkeypatch.delenv(name, raising=False)
    graph = build_definitions().resolve_asset_graph()
    assert graph.get(dg.AssetKey("reference_file_notifications")).kinds == {"log"}
