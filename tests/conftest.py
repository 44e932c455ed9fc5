"""Shared fixtures: synthetic files, temporary RDMT homes and database servers on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SERVER_ENV = "RDMT_REQUIRE_SERVERS"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _unavailable(what: str):
    message = f"{what} is not reachable on 127.0.0.1: SKIPPING server-backed test"
    if os.environ.get(SERVER_ENV):
        pytest.fail(f"{message} ({SERVER_ENV} is set, so this is an error)")
    warnings.warn(message)
    pytest.skip(message)


@contextlib.contextmanager
def _fresh_database(admin_url: str, quote: str, drop_suffix: str = ""):
    """Create a uniquely named database on a server, yield its name, and drop it afterwards.

    Every test gets its own database: tests that share one see each other's rows, and with
    pytest-xdist which tests share a worker (and so a session fixture) changes from run to run.
    """
    import sqlalchemy as sa

    name = f"rdmt_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {quote}{name}{quote}"))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{drop_suffix}"))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server():
    """The machine's PostgreSQL server (trust auth), or a loud skip / failure when it is unreachable."""
    if not _reachable(5432):
        _unavailable("PostgreSQL (127.0.0.1:5432)")
    return "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session")
def mariadb_server():
    """The machine's MariaDB server (root, empty password), or a loud skip / failure when it is unreachable."""
    if not _reachable(3306):
        _unavailable("MariaDB (127.0.0.1:3306)")
    return "mysql+pymysql://root@127.0.0.1:3306"


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh PostgreSQL database for this test only."""
    with _fresh_database(f"{postgres_server}/postgres", '"', " WITH (FORCE)") as name:
        yield f"{postgres_server}/{name}"


@pytest.fixture
def mariadb_url(mariadb_server):
    """A fresh MariaDB database for this test only."""
    with _fresh_database(f"{mariadb_server}/", "`") as name:
        yield f"{mariadb_server}/{name}"


@pytest.fixture(scope="session")
def dark_pair(tmp_path_factory):
    """Two deliveries of WFI03 darks: a normal one and one with an amp 5-6 glow."""
    from rdmt_dagster.synthetic import DarkAnomaly, write_dark

    folder = tmp_path_factory.mktemp("darks")
    first = write_dark(folder / "roman_wfi_dark_1003.asdf", "WFI03", 1, "2027-01-01T00:00:00")
    second = write_dark(folder / "roman_wfi_dark_1021.asdf", "WFI03", 2, "2027-02-01T00:00:00",
                        anomaly=DarkAnomaly(first_amp=5, n_amps=2, factor=3.0))
    return first, second


@pytest.fixture(scope="session")
def dark_normal_pair(tmp_path_factory):
    """Two normal deliveries of WFI11 darks."""
    from rdmt_dagster.synthetic import write_dark

    folder = tmp_path_factory.mktemp("darks_normal")
    first = write_dark(folder / "roman_wfi_dark_2011.asdf", "WFI11", 1, "2027-01-01T00:00:00")
    second = write_dark(folder / "roman_wfi_dark_2029.asdf", "WFI11", 2, "2027-02-01T00:00:00")
    return first, second


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_on_loopback(secret_key: str = "testing"):
    """A moto server on 127.0.0.1 with credentials in the environment; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


class SlackWebhook:
    """An incoming-webhook stand-in on loopback: records each POST, answers 500 to the first ``fail`` of them."""

    def __init__(self, token: str, fail: int = 0):
        self.requests: list[tuple[str, dict]] = []
        self.fail = fail
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append((self.path, json.loads(body)))
                status = 500 if len(server.requests) <= server.fail else 200
                payload = b"internal_error" if status == 500 else b"ok"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.base}/services/T0ABCDEF/B0GHIJKL/{token}"

    @property
    def bodies(self) -> list[dict]:
        return [body for _, body in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
