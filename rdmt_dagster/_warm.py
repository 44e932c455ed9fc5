"""Imported by the worker-process server (`rdmt_dagster.parallel`) to load schemas once.

roman_datamodels and asdf load their schemas and extensions on the first
file opened in a process (~1.2 s); doing it here, before the server forks its
workers, saves that in every worker.
"""

import tempfile
from pathlib import Path

from ._yaml_speedup import install

install()

import roman_datamodels.datamodels as rdm  # noqa: E402 - after install(): its manifests parse with libyaml

with tempfile.TemporaryDirectory(prefix="rdmt-warm-") as _folder:
    _path = Path(_folder) / "warm.asdf"
    rdm.DarkRefModel.create_fake_data(shape=(8, 8)).save(_path)
    with rdm.open(_path) as _model:
        _model.validate()
