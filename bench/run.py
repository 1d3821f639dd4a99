"""The JSON API's throughput beside a bare-Flask baseline served with the very same
gunicorn settings (the repository's gunicorn.conf.py), measured with wrk. Prints
figures only; bench/README.md keeps them.

    make bench                                   # or: .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --repo /path/to/another/checkout   # before/after
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "scripts"))

from local_stack import ISSUER, production_env  # noqa: E402

CONNECTIONS = 32
TARGETS = {"create": 0.27, "list": 0.30, "get": 0.33}
LUA_POST = """
wrk.method = "POST"
wrk.body = '{"title": "Benchmark"}'
wrk.headers["Content-Type"] = "application/json"
"""


def scratch(prefix: str) -> Path:
    """A folder for this run's PostgreSQL and keys, removed when the process ends. Made
    before PostgreSQL starts, so its removal is registered first and runs last, once
    the server has stopped."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def gunicorn(app: str, port: int, env: dict[str, str], *, config: Path, cwd: Path):
    """gunicorn with `config`, whatever the app: the service and the baseline alike. Its
    log goes to the file BENCH_LOG names, if any."""
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), app]
    log = open(os.environ["BENCH_LOG"], "a") if os.environ.get("BENCH_LOG") else None
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}"},
        stderr=log or subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def wrk(url: str, *, token: str | None, duration: int, connections: int, lua: str | None = None):
    args = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{duration}s"]
    args.append("--latency")
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    script = None
    if lua:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(lua)
        args += ["-s", script.name]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(errors.group(1)) if errors else 0,
    }


def seed(database_url: str) -> str:
    """40 conversations of user_bench, the first with 20 messages; returns its id."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conversations (id, org_id, user_id, title, model) "
            "SELECT lpad(to_hex(n), 24, '0'), 'org_bench', 'user_bench', 'Conversation ' || n, 'm' "
            "FROM generate_series(1, 40) AS n"
        )
        conn.execute(
            "INSERT INTO messages (org_id, id, conversation_id, role, content, created_at) "
            "SELECT 'org_bench', lpad(to_hex(n + 4096), 24, '0'), lpad(to_hex(1), 24, '0'), 'user', "
            "repeat('Message text ', 20), now() + n * interval '1 ms' FROM generate_series(1, 20) AS n"
        )
        conn.execute(
            "UPDATE conversations SET message_count = 20, last_message_at = now() "
            "WHERE id = lpad(to_hex(1), 24, '0')"
        )
        conn.execute("VACUUM (ANALYZE) conversations, messages")
    return "0" * 23 + "1"


def bulk_load(database_url: str, user: str, count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conversations (id, org_id, user_id, title, model, created_at, updated_at) "
            "SELECT md5(%s || n)::varchar(24), 'org_bench', %s, 'Bulk ' || n, 'm', t, t "
            "FROM generate_series(1, %s) AS n, "
            "LATERAL (SELECT timestamptz '2026-01-01' + n * interval '1 second' AS t) AS times",
            (user, user, count),
        )
        # Statistics for the planner, and no autovacuum reading the table meanwhile.
        conn.execute("VACUUM (ANALYZE) conversations")


def line(name: str, result: dict, baseline_rps: float | None = None) -> str:
    text = (
        f"{name:<8} {result['rps']:>8.0f} req/s  p50 {result['p50']:>6.2f} ms  "
        f"p99 {result['p99']:>6.2f} ms  p99/p50 {result['p99'] / result['p50']:4.2f}  "
        f"errors {result['errors']}"
    )
    if baseline_rps is None:
        return text
    ratio, target = result["rps"] / baseline_rps, TARGETS[name]
    tail = result["p99"] / result["p50"]
    ok = ratio >= target and tail <= 2 and result["errors"] == 0
    return f"{text}  ratio {ratio:.3f} (target {target:.2f}) {'ok' if ok else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the deep-list run")
    parser.add_argument("--repo", type=Path, default=BENCH.parent, help="checkout to serve")
    parser.add_argument("--skip-depth", action="store_true", help="no 1M-row list run")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="serve floor_app.py (the use cases and dumps alone) instead of the service",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it)")

    repo = args.repo.resolve()
    instance = scratch("florent-bench-")
    env, key = production_env(instance, RATELIMIT_ENABLED="false", repo=repo)
    token = key.sign("user_bench", "org_bench", issuer=ISSUER, ttl=3600)
    with_messages = seed(env["DATABASE_URL"])

    service_port, baseline_port = free_port(), free_port()
    config = repo / "gunicorn.conf.py"
    # The floor has no health endpoint (nor anything but the three benchmarked requests).
    app, cwd, ready = (
        ("floor_app:app", BENCH, "/api/florent/conversations?limit=1")
        if args.floor
        else ("wsgi:app", repo, "/healthz")
    )
    service = gunicorn(app, service_port, env, config=config, cwd=cwd)
    baseline = gunicorn("baseline_app:app", baseline_port, env, config=config, cwd=BENCH)
    try:
        wait_until_up(f"http://127.0.0.1:{service_port}{ready}")
        wait_until_up(f"http://127.0.0.1:{baseline_port}/")
        api = f"http://127.0.0.1:{service_port}/api/florent/conversations"
        baseline_url = f"http://127.0.0.1:{baseline_port}/"
        overrides = {k: v for k, v in env.items() if k.startswith("GUNICORN_")}

        def run(url: str, **kw) -> dict:
            return wrk(url, duration=args.duration, connections=CONNECTIONS, **kw)

        served = "bench/floor_app.py on the code of" if args.floor else "serving"
        print(f"{served} {repo} with its gunicorn.conf.py {overrides or ''}")
        print(f"wrk: {CONNECTIONS} connections, {args.duration} s a run; the baseline (bare")
        print(
            "Flask, same gunicorn settings) runs around every run, and ratios are to their mean\n"
        )
        run(baseline_url, token=None)  # warm-up
        run(api + "?limit=30", token=token)
        before = run(baseline_url, token=None)
        print(line("baseline", before))
        for name, url, lua in (
            ("create", api, LUA_POST),
            ("list", api + "?limit=30", None),
            ("get", f"{api}/{with_messages}", None),
        ):
            result = run(url, token=token, lua=lua)
            after = run(baseline_url, token=None)
            print(line(name, result, (before["rps"] + after["rps"]) / 2))
            print(line("baseline", after))
            before = after
        if not (args.skip_depth or args.floor):
            depth(env, key, api, args)
    finally:
        for process in (service, baseline):
            process.terminate()
            process.wait()


def depth(env: dict[str, str], key, api: str, args) -> None:
    """A list page's latency at 1k and 1M conversations of one caller, one connection."""
    print(f"\nlist page latency, 1 connection: 1,000 vs {args.rows:,} conversations of one caller")
    bulk_load(env["DATABASE_URL"], "user_1k", 1_000)
    started = time.monotonic()
    bulk_load(env["DATABASE_URL"], "user_1m", args.rows)
    print(f"(bulk-loaded {args.rows:,} rows in {time.monotonic() - started:.1f} s)")
    small = key.sign("user_1k", "org_bench", issuer=ISSUER, ttl=3600)
    large = key.sign("user_1m", "org_bench", issuer=ISSUER, ttl=3600)

    def one(t: str, duration: int) -> dict:
        return wrk(api + "?limit=30", token=t, duration=duration, connections=1)

    one(small, 2)
    # The machine slows for a while after a bulk load: short runs in the order 1k, 1M,
    # 1M, 1k, three times over, so the drift falls on both alike.
    runs: dict[str, list[dict]] = {"1k": [], "1M": []}
    for _ in range(3):
        for name, token in (("1k", small), ("1M", large), ("1M", large), ("1k", small)):
            runs[name].append(one(token, max(1, args.duration // 5)))
    p50 = {}
    for name, done in runs.items():
        p50[name] = statistics.mean(run["p50"] for run in done)
        spread = ", ".join(f"{run['p50']:.2f}" for run in done)
        print(
            f"{name:<8} p50 {p50[name]:.2f} ms (runs {spread})"
            f"  p99 {max(run['p99'] for run in done):.2f} ms"
        )
    ratio = p50["1M"] / p50["1k"]
    print(f"1M/1k p50 ratio {ratio:.2f} (target <= 1.2) {'ok' if ratio <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
