"""Benchmarks: the service under gunicorn (the repository's config) on embedded
PostgreSQL, beside a bare-Flask baseline, measured with wrk. Prints figures only.

    make bench                     # or: .venv/bin/python bench/run.py [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from local_stack import ISSUER, production_env  # noqa: E402

CONNECTIONS = 32
LUA_POST = """
wrk.method = "POST"
wrk.body = '{"title": "Benchmark"}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def gunicorn(
    app: str, port: int, env: dict[str, str], *extra: str, cwd: Path = ROOT
) -> subprocess.Popen:
    """gunicorn reads gunicorn.conf.py from `cwd`: the repository's for the service."""
    command = [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", *extra]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )


def wrk(
    url: str, *, token: str | None, duration: int, connections: int, lua: str | None = None
) -> dict:
    args = [
        "wrk",
        "-t",
        str(min(2, connections)),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--latency",
    ]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    script = None
    if lua:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(lua)
        script.close()
        args += ["-s", script.name]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def seed(database_url: str) -> tuple[str, str]:
    """A conversation with 20 messages and 40 conversations for user_bench; returns
    (conversation id with messages, any id)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO conversations (id, org_id, user_id, title, model) "
            "SELECT lpad(to_hex(n), 24, '0'), 'org_bench', 'user_bench', 'Conversation ' || n, 'm' "
            "FROM generate_series(1, 40) AS n"
        )
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, content, created_at) "
            "SELECT lpad(to_hex(n + 4096), 24, '0'), lpad(to_hex(1), 24, '0'), 'user', "
            "repeat('Message text ', 20), now() + n * interval '1 ms' FROM generate_series(1, 20) AS n"
        )
        conn.execute(
            "UPDATE conversations SET message_count = 20, last_message_at = now() WHERE id = lpad(to_hex(1), 24, '0')"
        )
    return "0" * 23 + "1", "0" * 23 + "2"


def bulk_load(database_url: str, user: str, count: int) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO conversations (id, org_id, user_id, title, model, created_at, updated_at) "
            "SELECT md5(%s || n)::varchar(24), 'org_bench', %s, 'Bulk ' || n, 'm', t, t "
            "FROM generate_series(1, %s) AS n, "
            "LATERAL (SELECT timestamptz '2026-01-01' + n * interval '1 second' AS t) AS times",
            (user, user, count),
        )
        conn.commit()
        # Vacuum now, so autovacuum is not still working through the new rows (reading
        # the whole table) while page latency is measured.
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) conversations")


def baseline_line(result: dict) -> str:
    return (
        f"baseline {result['rps']:>9.0f} req/s  p50 {result['p50']:>7.2f} ms  "
        f"p99 {result['p99']:>7.2f} ms"
    )


def ratio_line(name: str, result: dict, baseline_rps: float, target: float) -> str:
    ratio = result["rps"] / baseline_rps
    tail = result["p99"] / result["p50"]
    ok = "ok" if ratio >= target and tail <= 2 and result["errors"] == 0 else "MISSED"
    return (
        f"{name:<8} {result['rps']:>9.0f} req/s  p50 {result['p50']:>7.2f} ms  p99 {result['p99']:>7.2f} ms  "
        f"p99/p50 {tail:4.2f}  errors {result['errors']}  ratio {ratio:.3f} (target {target:.2f}) {ok}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the deep-list run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it)")

    instance = Path(tempfile.mkdtemp(prefix="florent-bench-"))
    env, key = production_env(instance, RATELIMIT_ENABLED="false")
    token = key.sign("user_bench", "org_bench", issuer=ISSUER, ttl=3600)
    with_messages, _ = seed(env["DATABASE_URL"])

    service_port, baseline_port = free_port(), free_port()
    service = gunicorn("wsgi:app", service_port, env)
    # Run from bench/, so the baseline gets gunicorn's defaults, not our config.
    baseline = gunicorn(
        "baseline_app:app",
        baseline_port,
        {},
        "--workers",
        "3",
        "--worker-class",
        "sync",
        cwd=ROOT / "bench",
    )
    overrides = {k: v for k, v in env.items() if k.startswith("GUNICORN_")}
    try:
        wait_until_up(f"http://127.0.0.1:{service_port}/healthz")
        wait_until_up(f"http://127.0.0.1:{baseline_port}/")
        service_url = f"http://127.0.0.1:{service_port}/api/florent/conversations"

        def run(url: str, **kw) -> dict:
            return wrk(url, duration=args.duration, connections=CONNECTIONS, **kw)

        print(f"gunicorn: gunicorn.conf.py with {overrides or 'its defaults'}")
        print(f"wrk: {CONNECTIONS} connections, {args.duration} s per run, 2 threads")
        print("each run sits between two baseline runs; its ratio is to their mean\n")
        baseline_url = f"http://127.0.0.1:{baseline_port}/"
        run(baseline_url, token=None)  # warm-up
        run(service_url + "?limit=30", token=token)  # warm-up
        # This machine's speed drifts by tens of percent over a minute, so the baseline is
        # measured again around every run rather than once before all of them.
        before = run(baseline_url, token=None)
        print(baseline_line(before))
        for name, url, lua, target in (
            ("create", service_url, LUA_POST, 0.30),
            ("list", service_url + "?limit=30", None, 0.25),
            ("get", f"{service_url}/{with_messages}", None, 0.25),
        ):
            result = run(url, token=token, lua=lua)
            after = run(baseline_url, token=None)
            print(ratio_line(name, result, (before["rps"] + after["rps"]) / 2, target))
            print(baseline_line(after))
            before = after

        print(
            f"\nlist page latency at 1 connection, 1,000 vs {args.rows:,} conversations of one caller"
        )
        bulk_load(env["DATABASE_URL"], "user_1k", 1_000)
        started = time.monotonic()
        bulk_load(env["DATABASE_URL"], "user_1m", args.rows)
        print(f"(bulk-loaded {args.rows:,} rows in {time.monotonic() - started:.1f} s)")
        small = key.sign("user_1k", "org_bench", issuer=ISSUER, ttl=3600)
        large = key.sign("user_1m", "org_bench", issuer=ISSUER, ttl=3600)

        def one(t: str) -> dict:
            return wrk(service_url + "?limit=30", token=t, duration=args.duration, connections=1)

        one(small)
        # In the order 1k, 1M, 1M, 1k, so the machine's drift falls on both alike.
        first_1k, first_1m, second_1m, second_1k = one(small), one(large), one(large), one(small)
        p50 = {}
        for name, runs in (("1k", (first_1k, second_1k)), ("1M", (first_1m, second_1m))):
            p50[name] = sum(run["p50"] for run in runs) / 2
            print(
                f"{name:<8} p50 {p50[name]:.2f} ms (runs {runs[0]['p50']:.2f}, {runs[1]['p50']:.2f})"
                f"  p99 {max(run['p99'] for run in runs):.2f} ms"
            )
        ratio = p50["1M"] / p50["1k"]
        print(f"1M/1k p50 ratio {ratio:.2f} (target <= 1.2) {'ok' if ratio <= 1.2 else 'MISSED'}")
    finally:
        for process in (service, baseline):
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
