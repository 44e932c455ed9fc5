"""Dagster resources: where RDMT keeps its outputs and which standards it applies."""


import os
import threading
from pathlib import Path

import dagster as dg

from ..science.standards import Standards, StandardsError
from ..storage.database import Database, sqlite_url
from ..storage.files import ParquetStore

_DATABASES: dict[str, Database] = {}
_LOCK = threading.Lock()


def open_database(url: str) -> Database:
    """One migrated `Database` per URL and process."""
    with _LOCK:
        if url not in _DATABASES:
            database = Database(url)
            database.upgrade()
            _DATABASES[url] = database
        return _DATABASES[url]


class RDMTConfig(dg.ConfigurableResource):
    """Storage locations, standards and parallelism of the monitors.

    Attributes
    ----------
    home : str
        Folder of the embedded defaults: ``rdmt.db`` (SQLite), ``parquet/``,
        ``ecsv/``, ``reports/``.
    database_url : str, optional
        SQLAlchemy URL (``mysql+pymysql://...``, ``postgresql+psycopg://...``);
        taken from the environment (``RDMT_DATABASE_URL``) because it may hold a
        password. Default: SQLite in ``home``.
    standards_file : str, optional
        A YAML file overriding the packaged standards.
    workers : int
        Files measured in parallel inside one run.
    reference_dirs : list of str
        Folders searched for a partition's file when it was not registered.
    remeasure : bool
        Measure files again even when their stored metrics came from the
        current monitor version (by default they are reused).
    """

    home: str = "rdmt_data"
    database_url: str | None = None
    standards_file: str | None = None
    workers: int = 2
    reference_dirs: list[str] = []
    remeasure: bool = False

    @property
    def home_path(self) -> Path:
        return Path(self.home).resolve()

    def resolved_database_url(self) -> str:
        """The database URL in use (the SQLite default when none is configured)."""
        url = self.database_url or sqlite_url(self.home_path / "rdmt.db")
        if url.startswith("sqlite"):
            self.home_path.mkdir(parents=True, exist_ok=True)
        return url

    def database(self) -> Database:
        return open_database(self.resolved_database_url())

    def parquet(self) -> ParquetStore:
        return ParquetStore(self.home_path / "parquet")

    @property
    def ecsv_root(self) -> Path:
        return self.home_path / "ecsv"

    def standards(self) -> Standards:
        """The packaged standards merged with ``standards_file``.

        Raises
        ------
        dagster.Failure
            The standards are invalid; the description lists every problem.
        """
        try:
            return Standards(self.standards_file)
        except StandardsError as exc:
            dg.get_dagster_logger().error(f"invalid standards:\n{exc}")
            raise dg.Failure(description=str(exc)) from exc

    def locate(self, filenames) -> dict[str, str]:
        """Path of each file: from its registration, else from ``reference_dirs``."""
        found = self.database().paths(filenames)
        for name in filenames:
            if name not in found:
                for folder in self.reference_dirs:
                    candidate = Path(folder, name)
                    if candidate.exists():
                        found[name] = str(candidate)
                        break
        return found


def config_from_environment(home=None) -> RDMTConfig:
    """`RDMTConfig` for commands run outside Dagster (``rdmt submit``, ``rdmt status``).

    ``home`` defaults to ``RDMT_HOME`` (else ``rdmt_data``); the database URL
    comes from ``RDMT_DATABASE_URL`` when set, read here rather than through
    Dagster's ``EnvVar``, which only resolves inside a run.
    """
    home = str(home) if home is not None else os.environ.get("RDMT_HOME", "rdmt_data")
    return RDMTConfig(home=home, database_url=os.environ.get("RDMT_DATABASE_URL") or None)


def env_or(name: str, default):
    """``EnvVar(name)`` when the variable is set (secrets stay out of code), else ``default``."""
    return dg.EnvVar(name) if os.environ.get(name) else default
