"""Standards: packaged YAML defaults, user overrides, provenance hash."""

import pytest

from rdmt_dagster.science.standards import Standards


def test_defaults_carry_the_seed_table_1_values():
    dark = Standards().for_monitor("dark")
    assert dark.metrics["dark_current_mean"]["mission"] == {"max": 1.0}
    assert dark.metrics["dark_current_percentile_99"]["soc"] == {"max": 0.99}
    assert dark.metrics["num_dead_pix"]["soc"] == {"max": 100000}
    assert dark.metrics["num_warm_pix"]["change"] == {"tolerance": 0.11}
    assert dark.evaluator_params("num_hot_pix", "superpixel")["change"] == {"tolerance": 0.11, "poisson_nsigma": 5}
    assert dark.evaluator_params("num_hot_pix", "amp")["change"] == {"tolerance": 0.11}


def test_user_file_overrides_part_of_a_block(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("dark:\n  metrics:\n    dark_current_mean:\n      soc: {max: 0.5}\n  check_severity: error\n")
    default, custom = Standards().for_monitor("dark"), Standards(user).for_monitor("dark")
    assert custom.metrics["dark_current_mean"]["soc"] == {"max": 0.5}
    assert custom.metrics["dark_current_mean"]["mission"] == {"max": 1.0}
    assert custom.check_severity == "ERROR"
    assert custom.hash != default.hash and len(custom.hash) == 12
    assert Standards().for_monitor("dark").hash == default.hash
    assert "mine.yaml" in custom.source


def test_bad_user_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("dark: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        Standards(bad)
    with pytest.raises(KeyError):
        Standards().for_monitor("no_such_monitor")
