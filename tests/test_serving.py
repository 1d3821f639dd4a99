"""The service under gunicorn with the repository's gunicorn.conf.py, over raw sockets."""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from .conftest import ISSUER, SECRET_KEY, JwksServer, free_port

ROOT = Path(__file__).resolve().parent.parent
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: florent.test\r\n\r\n"


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without gunicorn or Florent-replies settings (they
    would change the config under test), plus `settings`."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GUNICORN_", "FLORENT_LLM_"))
    }
    return {**inherited, **settings}


@pytest.fixture(scope="module")
def gunicorn(
    app: Flask, database_url: str, jwks_server: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """`gunicorn wsgi:app` from the repository root with one worker, on the test
    database (`app` has migrated it) and JWKS; yields its port."""
    port = free_port()
    env = environment(
        FLORENT_ENV="development",
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        WORKOS_JWKS_URL=jwks_server.url,
        WORKOS_ISSUER=ISSUER,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        # One worker: a request waits for the one before it to be let go.
        GUNICORN_WORKERS="1",
    )
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not answers(port):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(HEALTHZ)
            return read_response(sock).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it half-closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def data_segments_received(sock: socket.socket) -> int:
    """tcpi_data_segs_in from Linux's struct tcp_info: packets that carried data."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 152)[0]


def test_a_response_arrives_in_one_packet(gunicorn):
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as client:
        client.sendall(HEALTHZ)
        assert read_response(client).startswith(b"HTTP/1.1 200")
        assert data_segments_received(client) == 1  # head and body, not one each


def test_a_client_that_expects_100_continue_gets_it_at_once(gunicorn, make_token):
    """curl sends `Expect: 100-continue` with larger bodies and holds the body back
    until the server says go (or a second passes): a corked 100 would wait 200 ms."""
    body = b'{"title": "Expecting"}'
    head = (
        b"POST /api/florent/conversations HTTP/1.1\r\nHost: florent.test\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (make_token().encode(), len(body))
    )
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as client:
        client.sendall(head)
        started = time.monotonic()
        assert client.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert time.monotonic() - started < 0.15
        client.sendall(body)
        assert b"HTTP/1.1 201" in read_response(client)


def test_a_worker_does_not_wait_for_a_client_to_hang_up(gunicorn):
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as first:
        first.sendall(HEALTHZ)
        assert read_response(first).startswith(b"HTTP/1.1 200")
        # `first` stays open. gunicorn's own sync worker would now wait up to 2 s for
        # it to hang up before serving anyone else.
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as second:
            second.sendall(HEALTHZ)
            assert read_response(second).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 1.0


def test_a_worker_still_drains_a_body_it_did_not_read(gunicorn):
    """A 401 answers before the body is read. Closing then would make the kernel reset
    the connection on the rest of the body, and the client could lose the response."""
    body = b'{"title": "' + b"x" * 1000 + b'"}'
    head = (
        b"POST /api/florent/conversations HTTP/1.1\r\nHost: florent.test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as client:
        client.sendall(head + body[:10])
        assert read_response(client).startswith(b"HTTP/1.1 401")
        client.sendall(body[10:])
        time.sleep(0.2)  # on loopback a reset, if any, is back long before this
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != errno.ECONNRESET
        client.sendall(b"more")  # the worker is still reading: no reset, no broken pipe


def test_the_config_picks_florents_worker_and_heartbeats_in_memory():
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "wsgi:app"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    settings = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in printed.splitlines())
    }
    assert settings["worker_class"] == "florent.serving.SyncWorker"
    assert settings["worker_tmp_dir"] == ("/dev/shm" if os.path.isdir("/dev/shm") else "None")
