"""Production mode on this machine: embedded PostgreSQL, a loopback JWKS, gunicorn.

`make serve` and the benchmarks use it. In production mode the service trusts only
its JWKS, so this serves the public half of the development key (instance/) as one,
and prints a token signed by it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from florent.auth.sessions import ALGORITHM, DevSigningKey  # noqa: E402
from florent.devdb import start_embedded_postgres  # noqa: E402

ISSUER = "florent-local"


def serve_jwks(key: DevSigningKey) -> str:
    """Serve `key` as a JWKS on a loopback port; returns its URL."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key))
    body = json.dumps({"keys": [{**jwk, "kid": key.kid, "alg": ALGORITHM, "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/jwks"


def production_env(
    instance: Path, database: str = "florent", *, repo: Path = ROOT, **extra: str
) -> tuple[dict[str, str], DevSigningKey]:
    """Start PostgreSQL and the JWKS; return the environment for the service (the code of
    `repo`, migrated), and the key."""
    database_url = start_embedded_postgres(instance / "postgres", database)
    key = DevSigningKey(instance / "dev-jwt-key.pem")
    env = {
        **os.environ,
        "FLORENT_ENV": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_hex(32),
        "WORKOS_JWKS_URL": serve_jwks(key),
        "WORKOS_ISSUER": ISSUER,
        "PYTHONPATH": str(repo),
        **extra,
    }
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "florent", "db", "upgrade"],
        cwd=repo,
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return env, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    args = parser.parse_args()

    env, key = production_env(ROOT / "instance")
    env["GUNICORN_BIND"] = f"127.0.0.1:{args.port}"
    token = key.sign("user_local", "org_local", issuer=ISSUER, ttl=24 * 3600)
    print(f"\nFlorent (production mode) on http://127.0.0.1:{args.port}")
    print("A token for user_local in org_local, valid 24 hours:")
    print(f"  TOKEN={token}")
    print(
        f"  curl -i -X POST http://127.0.0.1:{args.port}/api/florent/conversations "
        "-H \"Authorization: Bearer $TOKEN\" -d '{}'\n",
        flush=True,
    )
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, env=env)
    signal.signal(signal.SIGTERM, lambda *_: gunicorn.terminate())
    try:
        gunicorn.wait()
    except KeyboardInterrupt:
        gunicorn.terminate()
        gunicorn.wait()


if __name__ == "__main__":
    main()
