"""Hostile files end fast with a clear error, and the good files of the same call are still measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rdmt_dagster.cli import main
from rdmt_dagster.science.measure import MAX_TREE_DEPTH

HEADER = "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n--- !core/asdf-1.1.0\n"


def _alias_bomb(path, levels=9):
    """Nested YAML aliases: ~600 bytes that expand to 10**levels nodes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    path.write_text(HEADER + "\n".join(lines) + "\n...\n")
    return path


@pytest.fixture
def good_image(tmp_path):
    from rdmt_dagster.synthetic.l2 import L2Scene, write_l2

    path, _ = write_l2(tmp_path / "r0000101001001001001_01101_0001_WFI01_cal.asdf",
                       L2Scene(shape=(256, 256), n_stars=50), catalog=False)
    return path


def _check(capsys, *paths):
    code = main(["check", "--json", "--monitors", "pixel", *map(str, paths)])
    return code, json.loads(capsys.readouterr().out)["files"]


def test_alias_bomb_is_refused_before_asdf_walks_it(tmp_path, good_image, capsys):
    code, files = _check(capsys, _alias_bomb(tmp_path / "bomb.asdf"), good_image)
    bomb, good = files
    assert bomb["status"] == "error" and "bomb.asdf" in bomb["error"] and "nested aliases" in bomb["error"]
    assert good["status"] == "ok"
    assert code == 2


def test_deeply_nested_tree_is_refused(tmp_path, capsys):
    depth = MAX_TREE_DEPTH + 10
    (tmp_path / "deep.asdf").write_text(HEADER + "a: " + "[" * depth + "]" * depth + "\n...\n")
    code, files = _check(capsys, tmp_path / "deep.asdf")
    assert code == 2 and "nested deeper" in files[0]["error"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_is_refused_without_blocking(tmp_path, good_image):
    fifo = tmp_path / "pipe.asdf"
    os.mkfifo(fifo)
    # In a subprocess with a generous timeout: before the fix, opening the FIFO blocked forever.
    done = subprocess.run([sys.executable, "-m", "rdmt_dagster.cli", "check", "--json", "--monitors", "pixel",
                           str(fifo), str(good_image)], capture_output=True, text=True, timeout=120)
    files = json.loads(done.stdout)["files"]
    assert files[0]["status"] == "error" and "not a regular file" in files[0]["error"]
    assert files[1]["status"] == "ok" and done.returncode == 2
