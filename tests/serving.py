"""The service as it runs in production: gunicorn with the repository's gunicorn.conf.py
(gevent workers), on the test database, a JWKS and a fake model server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from .conftest import ISSUER, SECRET_KEY, free_port

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """A running gunicorn, and the JSON lines its workers log."""

    def __init__(self, process: subprocess.Popen, url: str):
        self.process, self.url = process, url
        self.lines: list[dict[str, Any]] = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for raw in self.process.stderr:
            with contextlib.suppress(ValueError):  # gunicorn's own lines are not JSON
                self.lines.append(json.loads(raw))

    def pid_of(self, request_id: str, timeout: float = 5.0) -> int:
        """The worker that served the request with this X-Request-Id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.get("request_id") == request_id and line.get("message") == "request":
                    return line["pid"]
            time.sleep(0.05)
        raise AssertionError(f"no access line for {request_id}")


@contextmanager
def gunicorn(database_url: str, jwks_url: str, **environ: str) -> Iterator[Gunicorn]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FLORENT_"))},
        "FLORENT_ENV": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "WORKOS_JWKS_URL": jwks_url,
        "WORKOS_ISSUER": ISSUER,
        "FLORENT_MODEL": "florent-test-model",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
        **environ,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Gunicorn(process, f"http://127.0.0.1:{port}")
    try:
        wait_for(f"{server.url}/readyz")
        yield server
    finally:
        stop(process, timeout=15)
        process.stderr.close()


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate the process, and kill it if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")
