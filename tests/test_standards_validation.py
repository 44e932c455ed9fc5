"""Standards files are validated when loaded: every problem named by file and key path.

``rdmt check`` with an invalid standards file prints each problem prefixed
``rdmt check: `` and exits 2 before measuring; the platform's run fails with
the problems as its description.
"""

import copy
import json

import dagster as dg
import numpy as np
import pytest

from rdmt_dagster.cli import main
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.science.metrics import FileInfo, Metric, MetricSet
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards, StandardsError, default_files, validate

DARK_MEAN = "dark:\n  metrics:\n    dark_current_mean:\n"


def write(tmp_path, content, name="mine.yaml"):
    """A standards file holding ``content`` (str or bytes)."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def check_rejects(tmp_path, capsys, content) -> tuple:
    """Run ``rdmt check`` with ``content`` as the standards; it must refuse before measuring.

    Returns
    -------
    tuple
        The standards file and its problems (stderr lines less the ``rdmt check: `` prefix).
    """
    config = write(tmp_path, content)
    # The data file does not exist: were it measured, stdout would hold its error entry.
    status = main(["check", "--config", str(config), str(tmp_path / "nowhere.asdf")])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert lines and all(line.startswith("rdmt check: ") for line in lines), err
    return config, [line.removeprefix("rdmt check: ") for line in lines]


def problem_at(tmp_path, capsys, content, key_path: str) -> str:
    """The one problem reported at ``key_path`` of the user's file; what it says."""
    config, problems = check_rejects(tmp_path, capsys, content)
    prefix = f"{config}: {key_path}: "
    found = [p.removeprefix(prefix) for p in problems if p.startswith(prefix)]
    assert len(found) == 1, problems
    return found[0]


# ----------------------------------------------------------------------------- values


def test_string_limit(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + '      soc: {max: "abc"}\n',
                      "dark.metrics.dark_current_mean.soc.max")
    assert said == "expected a number, got the string 'abc'"


def test_boolean_limit(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + "      soc: {max: true}\n",
                      "dark.metrics.dark_current_mean.soc.max")
    assert said == "expected a number, got a boolean (true)"


def test_trend_window_not_an_integer(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + '      trend: {n: "ten"}\n',
                      "dark.metrics.dark_current_mean.trend.n")
    assert said == "expected an integer, got the string 'ten'"


def test_metrics_not_a_mapping(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, "dark:\n  metrics: 5\n", "dark.metrics")
    assert said == "expected a mapping of metric name -> standards, got 5"


def test_negative_tolerance(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + "      change: {tolerance: -0.1}\n",
                      "dark.metrics.dark_current_mean.change.tolerance")
    assert said == "must be >= 0, got -0.1"


def test_min_above_max(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + "      soc: {min: 2, max: 1}\n",
                      "dark.metrics.dark_current_mean.soc")
    assert said == "min 2 is above max 1"


def test_min_above_max_after_a_scale_override(tmp_path, capsys):
    content = DARK_MEAN + "      scales:\n        amp:\n          soc: {min: 2}\n"
    said = problem_at(tmp_path, capsys, content, "dark.metrics.dark_current_mean.scales.amp.soc")
    assert said == "min 2 is above max 1.0"


def test_min_history_beyond_the_trend_window(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + "      trend: {n: 2}\n",
                      "dark.metrics.dark_current_mean.trend")
    assert said.startswith("min_history 3 is above n 2")


def test_unknown_severity(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, "dark:\n  check_severity: LOUD\n", "dark.check_severity")
    assert said == "expected WARN or ERROR (any case), got the string 'LOUD'"


# ----------------------------------------------------------------------------- names


def test_unknown_parameter_key(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + "      soc: {maxx: 0.5}\n",
                      "dark.metrics.dark_current_mean.soc.maxx")
    assert said == "unknown key (expected max, min)"


def test_unknown_metric(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, "gain:\n  metrics:\n    gain_meen:\n      soc: {max: 2.1}\n",
                      "gain.metrics.gain_meen")
    assert said.startswith("no such metric of monitor gain") and "gain_mean" in said


def test_unknown_evaluator(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, DARK_MEAN + "      missionn: {max: 1.0}\n",
                      "dark.metrics.dark_current_mean.missionn")
    assert said == "unknown key (expected change, extensive, mission, scales, soc, trend)"


def test_unknown_monitor(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, "darkk:\n  check_severity: WARN\n", "darkk")
    assert said.startswith("no such monitor") and "dark" in said


def test_unknown_scale(tmp_path, capsys):
    content = DARK_MEAN + "      scales:\n        superpixl:\n          change: {tolerance: 0.2}\n"
    said = problem_at(tmp_path, capsys, content, "dark.metrics.dark_current_mean.scales.superpixl")
    assert said.startswith("unknown scale (expected amp, detector, superpixel)")


def test_unknown_evaluator_kind(tmp_path, capsys):
    said = problem_at(tmp_path, capsys, "common:\n  evaluators:\n    rfp: relative\n", "common.evaluators.rfp")
    assert said == "expected one of absolute, change, trend, got the string 'relative'"


# ----------------------------------------------------------------------------- files


def test_binary_file(tmp_path, capsys):
    config, problems = check_rejects(tmp_path, capsys, bytes(range(256)))
    assert problems == [f"{config}: not a UTF-8 text file (byte 0x80 at offset 128)"]


def test_yaml_syntax_error(tmp_path, capsys):
    config, problems = check_rejects(tmp_path, capsys, "dark: [unclosed\n")
    assert len(problems) == 1 and problems[0].startswith(f"{config}: not valid YAML: line 2, column 1: ")


def test_top_level_list(tmp_path, capsys):
    config, problems = check_rejects(tmp_path, capsys, "- dark\n- gain\n")
    assert problems == [f"{config}: expected a mapping of monitor name -> block at the top level, got a list"]


def test_missing_file(tmp_path, capsys):
    status = main(["check", "--config", str(tmp_path / "absent.yaml"), str(tmp_path / "nowhere.asdf")])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err == f"rdmt check: {tmp_path / 'absent.yaml'}: cannot be read: No such file or directory\n"


def test_every_problem_is_listed(tmp_path, capsys):
    content = (
        "darkk: {}\n"
        "dark:\n  check_severity: LOUD\n  metrics:\n    dark_current_mean:\n"
        '      soc: {maxx: 0.5, max: "abc"}\n      change: {tolerance: -0.1}\n'
        "gain:\n  metrics: 5\n"
    )
    config, problems = check_rejects(tmp_path, capsys, content)
    paths = sorted(p.removeprefix(f"{config}: ").split(": ")[0] for p in problems)
    assert paths == [
        "dark.check_severity",
        "dark.metrics.dark_current_mean.change.tolerance",
        "dark.metrics.dark_current_mean.soc.max",
        "dark.metrics.dark_current_mean.soc.maxx",
        "darkk",
        "gain.metrics",
    ]
    with pytest.raises(StandardsError) as raised:
        Standards(config)
    assert str(raised.value).splitlines() == problems


def test_problem_in_a_packaged_default_names_that_file(tmp_path):
    files = copy.deepcopy(default_files())
    label, dark = next((label, data) for label, data in files if label.endswith("dark.yaml"))
    dark["dark"]["metrics"]["dark_current_mean"]["mission"] = {"max": "abc"}
    files.append(("mine.yaml", {"dark": {"metrics": {"dark_current_mean": {"soc": {"max": True}}}}}))
    with pytest.raises(StandardsError) as raised:
        validate(files)
    assert raised.value.problems == [
        f"{label}: dark.metrics.dark_current_mean.mission.max: expected a number, got the string 'abc'",
        "mine.yaml: dark.metrics.dark_current_mean.soc.max: expected a number, got a boolean (true)",
    ]


# ----------------------------------------------------------------------------- accepted


def test_packaged_defaults_validate():
    standards = Standards()
    assert set(standards.monitors()) >= {"dark", "astrometry", "psf"}
    # YAML 1.1 would read the unsigned exponent of 1.0e5 as a string.
    assert standards.for_monitor("pixel").metrics["pixel_max"]["mission"] == {"max": 1.0e5}


def _dark_mean_at(value: float) -> MetricSet:
    metric = Metric("dark_current_mean", "DN / s", ScaleValues(detector=np.array([value])))
    return MetricSet(FileInfo("dark.asdf", "dark.asdf", "dark"), "1", [metric])


def _failing(standards: Standards, metric_set: MetricSet) -> set:
    result = evaluate(metric_set, standards.for_monitor("dark"))
    return {(e.evaluator, e.metric) for e in result.failures}


def test_valid_override_is_accepted_and_applied(tmp_path, capsys):
    config = write(tmp_path, DARK_MEAN + "      soc: {max: 0.5}\n  check_severity: error\n")
    standards = Standards(config)
    dark = standards.for_monitor("dark")
    assert dark.metrics["dark_current_mean"]["soc"] == {"max": 0.5}
    assert dark.metrics["dark_current_mean"]["mission"] == {"max": 1.0}
    assert dark.check_severity == "ERROR"
    assert _failing(Standards(), _dark_mean_at(0.7)) == set()
    assert _failing(standards, _dark_mean_at(0.7)) == {("soc", "dark_current_mean")}
    # Accepted by rdmt check, which then goes on to the (missing) data file.
    status = main(["check", "--json", "--config", str(config), str(tmp_path / "nowhere.asdf")])
    out, err = capsys.readouterr()
    assert status == 2 and err == ""
    doc = json.loads(out)
    assert doc["standards"] == "defaults+mine.yaml"
    assert doc["files"][0]["status"] == "error" and "nowhere.asdf" in doc["files"][0]["error"]


def test_switches_new_evaluators_and_exponents_are_accepted(tmp_path):
    config = write(tmp_path, (
        "common:\n  evaluators:\n    rfp: absolute\n"
        "dark:\n  parameters: {anything: [1, 2]}\n  metrics:\n    dark_current_mean:\n"
        "      trend: null\n      rfp: {max: 1e5}\n"
        "      scales:\n        superpixel: {change: null, rfp: {min: -1.0e3}}\n"
    ))
    dark = Standards(config).for_monitor("dark")
    assert dark.evaluator_params("dark_current_mean", "superpixel") == {
        "mission": {"max": 1.0}, "soc": {"max": 1.0}, "rfp": {"max": 1.0e5, "min": -1.0e3}}


def test_platform_run_fails_with_the_problems(tmp_path):
    config = write(tmp_path, DARK_MEAN + "      soc: {maxx: 0.5}\n")
    with pytest.raises(dg.Failure) as raised:
        RDMTConfig(home=str(tmp_path), standards_file=str(config)).standards()
    assert raised.value.description == (
        f"{config}: dark.metrics.dark_current_mean.soc.maxx: unknown key (expected max, min)")
    assert RDMTConfig(home=str(tmp_path)).standards().monitors()
