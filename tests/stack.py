"""The servers production puts around Florent, run by the tests: Redis, PgBouncer and
nginx from their Debian packages (scripts/ensure-test-packages.sh installs them). Each runs in
the foreground on a free loopback port, its configuration in a temporary directory, and
is stopped by terminating it."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import free_port
from .serving import stop

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"
PGBOUNCER = "/usr/sbin/pgbouncer"
NGINX = "/usr/sbin/nginx"
# What the app needs of a transaction pooler, as README's PgBouncer section says.
STATEMENT_TIMEOUT_MS = 2500


def require(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run `bash scripts/ensure-test-packages.sh` (as root)")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{process.args[0]} did not listen on {port}")


# -- Redis -------------------------------------------------------------------------


class RedisServer:
    """A redis-server that keeps nothing on disk; it can be stopped, started again on
    the same port (empty), paused and resumed."""

    def __init__(self, directory: Path):
        require(REDIS_SERVER)
        self.directory, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                *("--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            stop(self.process)

    def pause(self) -> None:
        """Hang it: connections are accepted, nothing is answered."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- PgBouncer ---------------------------------------------------------------------


@contextmanager
def pgbouncer(server_url: str, directory: Path) -> Iterator[str]:
    """PgBouncer in transaction pooling in front of the PostgreSQL of `server_url`, with
    two server connections per database; yields a URL template, `{database}` to fill."""
    require(PGBOUNCER)
    target = urlsplit(server_url)
    host = parse_qs(target.query).get("host", [target.hostname or "127.0.0.1"])[0]
    user = unquote(target.username or "postgres")
    server = f"host={host} port={target.port or 5432} user={user}"
    if target.password:
        server += f" password={unquote(target.password)}"
    port = free_port()
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        # Every database of the server, as the settings the app passes in `options`.
        f"* = {server} timezone=UTC"
        f" connect_query='SET statement_timeout = {STATEMENT_TIMEOUT_MS}'\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 500\n"
        "ignore_startup_parameters = options\n"
        # Clients log in as anyone: the [databases] line names the server's user.
        "auth_type = any\n"
    )
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses root: run as whoever may reach the server
        directory.chmod(0o755)
        config.chmod(0o644)
        owner = Path(host).stat().st_uid if host.startswith("/") else None
        command[1:1] = ["-u", pwd.getpwuid(owner).pw_name if owner else "nobody"]
    with open(directory / "pgbouncer.log", "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for_port(port, process)
        yield f"postgresql://{user}@127.0.0.1:{port}/{{database}}"
    finally:
        stop(process)


# -- nginx -------------------------------------------------------------------------


class Nginx:
    """deploy/nginx.conf, running; `url` is its https:// address, `ca` the certificate
    to trust it with, `access_log` the file it logs requests to."""

    def __init__(self, url: str, ca: Path, access_log: Path):
        self.url, self.ca, self.access_log = url, ca, access_log

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def replace_once(text: str, old: str, new: str) -> str:
    """`old` must be in the example exactly once: an edit that moves it fails the test
    rather than quietly testing something else."""
    assert text.count(old) == 1, f"deploy/nginx.conf should hold {old!r} once"
    return text.replace(old, new)


@contextmanager
def nginx(directory: Path, upstreams: list[str]) -> Iterator[Nginx]:
    """deploy/nginx.conf in front of `upstreams` (two host:port), on loopback ports."""
    require(NGINX)
    cert, key = self_signed_certificate(directory)
    http_port, https_port = free_port(), free_port()
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (
        ("server 127.0.0.1:8000;", f"server {upstreams[0]};"),
        ("server 127.0.0.1:8001;", f"server {upstreams[1]};"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("/etc/ssl/florent/fullchain.pem", str(cert)),
        ("/etc/ssl/florent/privkey.pem", str(key)),
        ("/var/log/nginx/florent.access.log", str(directory / "access.log")),
    ):
        config = replace_once(config, old, new)
    path = directory / "nginx.conf"
    path.write_text(config)
    command = [NGINX, "-p", str(directory), "-c", str(path), "-e", "stderr"]
    command += ["-g", f"daemon off; pid {directory / 'nginx.pid'};"]
    with open(directory / "error.log", "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for_port(https_port, process)
        yield Nginx(f"https://127.0.0.1:{https_port}", cert, directory / "access.log")
    finally:
        stop(process)
