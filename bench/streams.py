"""A thousand people chatting at once: replies streamed by the service as production
runs it (gunicorn with the repository's gunicorn.conf.py), from a fake model server in
a process of its own (bench/model_server.py). Prints figures only.

    .venv/bin/python bench/streams.py                  # server-sent events
    .venv/bin/python bench/streams.py --transport ws   # the conversation WebSocket

People start their turns evenly over --ramp seconds; each reply is --tokens pieces at
--rate a second, each piece stamped with the time the model server sent it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psutil
import psycopg
import requests
import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "scripts"))

from local_stack import ISSUER, production_env  # noqa: E402
from run import free_port, gunicorn, scratch, wait_until_up  # noqa: E402

API = "/api/florent/conversations"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


class Person:
    """One person's turn: what they saw, and when."""

    def __init__(self, token: str, conversation_id: str):
        self.token, self.conversation_id = token, conversation_id
        self.sent = self.first_delta = self.finished = 0.0
        self.token_latencies: list[float] = []
        self.end = "none"

    def delta(self, text: str) -> None:
        now = time.time()
        self.first_delta = self.first_delta or now
        self.token_latencies.append(now - float(text.split(" ", 1)[0]))


async def sse_turn(port: int, person: Person) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    body = b'{"content": "Hello Florent"}'
    writer.write(
        f"POST {API}/{person.conversation_id}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {person.token}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    person.sent = time.time()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 201 " not in head.split(b"\r\n", 1)[0]:
            person.end = head.split(b"\r\n", 1)[0].decode()
            return
        buffer = b""
        while True:  # chunked transfer encoding, then server-sent events
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"event: delta"):
                    person.delta(orjson.loads(event.split(b"data: ", 1)[1])["text"])
                elif event.startswith(b"event: "):
                    person.end = event[7:].split(b"\n", 1)[0].decode()
                    if person.end in ("done", "error", "stopped"):
                        person.finished = time.time()
    finally:
        writer.close()


async def socket_turn(port: int, person: Person) -> None:
    # The ticket over a raw connection too: the client must stay light beside the service.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {API}/{person.conversation_id}/ws-ticket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {person.token}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 201 " not in status:
        person.end = status.decode()
        return
    grant = orjson.loads(body)
    path = f"{urlsplit(grant['wsUrl']).path}?ticket={grant['ticket']}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    try:
        if not await upgrade(reader, writer, path, port):
            person.end = "upgrade refused"
            return
        message = orjson.dumps({"type": "message", "content": "Hello Florent"})
        writer.write(client_frame(OPCODE_TEXT, message))
        person.sent = time.time()
        while True:
            opcode, payload = await server_frame(reader)
            if opcode == OPCODE_PING:
                writer.write(client_frame(OPCODE_PONG, payload))
            elif opcode == OPCODE_CLOSE:
                person.end = "closed"
                return
            elif opcode == OPCODE_TEXT:
                frame = orjson.loads(payload)
                if frame["type"] == "delta":
                    person.delta(frame["text"])
                elif frame["type"] in ("done", "error", "stopped"):
                    person.end, person.finished = frame["type"], time.time()
                    writer.write(client_frame(OPCODE_CLOSE, b"\x03\xe8"))  # 1000: done
                    return
    finally:
        writer.close()


# A WebSocket client of the few lines this bench needs (RFC 6455), as light as the
# server-sent events client beside it: a library's client costs the machine's two cores
# more per frame than the service's own sending does.
OPCODE_TEXT, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x8, 0x9, 0xA
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, port: int
) -> bool:
    key = base64.b64encode(os.urandom(16))
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest()).lower()
    return b" 101 " in head.split(b"\r\n", 1)[0] and b"sec-websocket-accept: " + accept in head


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One whole frame, masked as a client's must be."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 2**16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + mask + bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))


async def server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame from the server (unmasked; it sends every message whole)."""
    first, second = await reader.readexactly(2)
    if not first & 0x80 or second & 0x80:
        raise ValueError("a fragmented or masked frame from the server")
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def load(port: int, people: list[Person], ramp: float, transport: str) -> None:
    turn = sse_turn if transport == "sse" else socket_turn

    async def start(n: int, person: Person) -> None:
        await asyncio.sleep(n * ramp / len(people))
        try:
            await turn(port, person)
        except Exception as error:  # counted as not done
            person.end = f"{type(error).__name__}: {error}"

    await asyncio.gather(*(start(n, person) for n, person in enumerate(people)))


class Sampler(threading.Thread):
    """The most PostgreSQL connections and service memory seen, every 100 ms, and the CPU
    time the service's processes spend while it runs."""

    def __init__(self, database_url: str, service: subprocess.Popen):
        super().__init__(daemon=True)
        self.database_url, self.service = database_url, service
        self.connections = self.rss = 0
        self.running = True
        self.cpu_seconds = -self.service_cpu()

    def service_cpu(self) -> float:
        parent = psutil.Process(self.service.pid)
        times = [p.cpu_times() for p in (parent, *parent.children(recursive=True))]
        return sum(t.user + t.system for t in times)

    def stop(self) -> None:
        self.running = False
        self.cpu_seconds += self.service_cpu()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while self.running:
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()[0]
                self.connections = max(self.connections, count)
                parent = psutil.Process(self.service.pid)
                processes = [parent, *parent.children(recursive=True)]
                self.rss = max(self.rss, sum(p.memory_info().rss for p in processes))
                time.sleep(0.1)


def list_latencies(url: str, token: str, seconds: float) -> list[float]:
    """GET the list again and again, one at a time, for `seconds`: each one's latency."""
    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    return latencies


def healthz_with_slow_clients(port: int, clients: int = 50, seconds: float = 12) -> float:
    """The slowest /healthz while `clients` send one header line every 5 s."""
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
    for conn in slow:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    worst, deadline, next_line = 0.0, time.monotonic() + seconds, time.monotonic() + 5
    while time.monotonic() < deadline:
        if time.monotonic() >= next_line:
            for conn in slow:
                conn.sendall(b"X-Slow: 1\r\n")
            next_line += 5
        started = time.perf_counter()
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.2)
    for conn in slow:
        conn.close()
    return worst


def seed(database_url: str, people: int) -> list[str]:
    """A conversation for each person, and thirty for the list prober."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conversations (id, org_id, user_id, title, model) "
            "SELECT lpad(to_hex(n), 24, '0'), 'org_load', 'user_' || n, 'Chat', 'm' "
            "FROM generate_series(1, %s) AS n",
            (people,),
        )
        conn.execute(
            "INSERT INTO conversations (id, org_id, user_id, title, model) "
            "SELECT lpad(to_hex(n + 1000000), 24, '0'), 'org_load', 'user_lister', 'L', 'm' "
            "FROM generate_series(1, 30) AS n"
        )
        conn.execute("VACUUM (ANALYZE) conversations")
    return [f"{n:024x}" for n in range(1, people + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--transport", choices=("sse", "ws"), default="sse")
    parser.add_argument("--repo", type=Path, default=BENCH.parent)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="serve the bare relay of baseline_app.py instead (server-sent events only)",
    )
    args = parser.parse_args()
    if args.baseline and args.transport != "sse":
        parser.error("the baseline relays server-sent events only")

    repo, model_port, port = args.repo.resolve(), free_port(), free_port()
    model = subprocess.Popen(
        [
            *(sys.executable, str(BENCH / "model_server.py"), "--port", str(model_port)),
            *("--tokens", str(args.tokens), "--rate", str(args.rate)),
        ],
        stdout=subprocess.DEVNULL,
    )
    env, key = production_env(
        scratch("florent-streams-"),
        repo=repo,
        FLORENT_LLM_BASE_URL=f"http://127.0.0.1:{model_port}/v1",
    )
    conversations = seed(env["DATABASE_URL"], args.people)
    people = [
        Person(key.sign(f"user_{n + 1}", "org_load", issuer=ISSUER), conversation_id)
        for n, conversation_id in enumerate(conversations)
    ]
    lister = key.sign("user_lister", "org_load", issuer=ISSUER)
    # The bare relay answers no list and has no /healthz: the relay alone is measured.
    app, cwd, up = (
        ("baseline_app:app", BENCH, "/") if args.baseline else ("wsgi:app", repo, "/healthz")
    )
    service = gunicorn(app, port, env, config=repo / "gunicorn.conf.py", cwd=cwd)
    probing = not args.baseline
    try:
        wait_until_up(f"http://127.0.0.1:{port}{up}")
        list_url = f"http://127.0.0.1:{port}{API}?limit=30"
        idle = list_latencies(list_url, lister, 5) if probing else []
        sampler = Sampler(env["DATABASE_URL"], service)
        sampler.start()
        during: list[float] = []
        reply_seconds = args.tokens / args.rate
        prober = threading.Thread(
            target=lambda: during.extend(
                list_latencies(list_url, lister, args.ramp + reply_seconds)
            )
        )
        if probing:
            prober.start()
        started = time.time()
        uvloop.run(load(port, people, args.ramp, args.transport))  # a light client
        elapsed = time.time() - started
        if probing:
            prober.join()
        sampler.stop()
        report(args, people, elapsed, idle, during, sampler)
        if probing:
            print(
                "/healthz with 50 slow clients: worst"
                f" {healthz_with_slow_clients(port) * 1000:.1f} ms (target <= 100)"
            )
    finally:
        service.terminate()
        service.wait()
        model.terminate()
        model.wait()


def report(args, people: list[Person], elapsed: float, idle, during, sampler: Sampler) -> None:
    done = [p for p in people if p.end == "done"]
    firsts = [p.first_delta - p.sent for p in done if p.first_delta]
    tokens = [latency for p in done for latency in p.token_latencies]
    budget = args.ramp + args.tokens / args.rate + 3
    ends: dict[str, int] = {}
    for person in people:
        ends[person.end] = ends.get(person.end, 0) + 1
    print(
        f"transport {args.transport}: {args.people} people over {args.ramp:g} s, "
        f"{args.tokens} pieces at {args.rate:g}/s"
    )
    print(f"replies done        {len(done)}/{len(people)}  {ends}")
    print(
        f"first delta         p50 {percentile(firsts, 50) * 1000:.0f} ms  "
        f"p99 {percentile(firsts, 99) * 1000:.0f} ms (target <= 500)"
    )
    print(
        f"added per token     p50 {percentile(tokens, 50) * 1000:.1f} ms  "
        f"p99 {percentile(tokens, 99) * 1000:.1f} ms (target <= 50)"
    )
    print(f"all done in         {elapsed:.1f} s (target <= {budget:g})")
    print(f"PostgreSQL conns    {sampler.connections} at most (target <= 20)")
    print(f"service RSS         {sampler.rss / 2**20:.0f} MB at most (target < 768)")
    print(
        f"service CPU         {sampler.cpu_seconds:.1f} s during the load"
        f" ({sampler.cpu_seconds / len(people) * 1000:.1f} ms a person)"
    )
    if idle and during:
        idle_p50, during_p50 = statistics.median(idle), statistics.median(during)
        print(
            f"list p50            idle {idle_p50 * 1000:.1f} ms, under load"
            f" {during_p50 * 1000:.1f} ms ({during_p50 / idle_p50:.1f}x, target <= 3x)"
        )


if __name__ == "__main__":
    main()
