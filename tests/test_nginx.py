"""deploy/nginx.conf in front of two instances (FLORENT_TRUSTED_PROXIES=1, one Redis):
replies arrive as they are generated, over server-sent events and the WebSocket, the
WebSocket's address is the public one, and Stop reaches a reply relayed by the other
instance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import requests
from simple_websocket import Client

from .conftest import bearer
from .factories import URL
from .serving import gunicorn
from .stack import Nginx, nginx, redis_server
from .test_streaming import sse_events

pytestmark = pytest.mark.slow  # nginx, Redis, gunicorn

# Each piece of a reply comes this long after the one before.
PIECE_SECONDS = 0.4


class Front:
    """nginx, and the two instances behind it."""

    def __init__(self, proxy: Nginx, instances: list[Any]):
        self.proxy, self.instances = proxy, instances
        self.url = proxy.url

    def post(self, path: str, token: str, **kwargs: Any) -> requests.Response:
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        return requests.post(
            f"{self.url}{path}", headers=headers, verify=str(self.proxy.ca), timeout=10, **kwargs
        )

    def instance_of(self, request_id: str, timeout: float = 5) -> int:
        """Which instance (0 or 1) served the request with this X-Request-Id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, instance in enumerate(self.instances):
                if any(line.get("request_id") == request_id for line in list(instance.lines)):
                    return index
            time.sleep(0.05)
        raise AssertionError(f"no instance logged {request_id}")


@pytest.fixture(scope="module")
def front(app, database_url, jwks_server, model_server, tmp_path_factory) -> Iterator[Front]:
    environ = {"FLORENT_TRUSTED_PROXIES": "1", "FLORENT_LLM_BASE_URL": model_server.base_url}
    with redis_server(tmp_path_factory.mktemp("redis")) as redis:
        environ["REDIS_URL"] = redis.url
        with (
            gunicorn(database_url, jwks_server.url, **environ) as first,
            gunicorn(database_url, jwks_server.url, **environ) as second,
        ):
            upstreams = [urlsplit(instance.url).netloc for instance in (first, second)]
            with nginx(tmp_path_factory.mktemp("nginx"), upstreams) as proxy:
                yield Front(proxy, [first, second])


@pytest.fixture
def token(make_token) -> str:
    return make_token("user_01ALICE", "org_01ACME")


def create(front: Front, token: str) -> str:
    response = front.post(URL, token, json={})
    assert response.status_code == 201, response.text
    return response.json()["conversation"]["_id"]


def stream(front: Front, token: str, conversation_id: str, request_id: str = "") -> Iterator:
    response = front.post(
        f"{URL}/{conversation_id}/messages",
        token,
        json={"content": "Tell me"},
        headers={"Accept": "text/event-stream", "X-Request-Id": request_id or "stream"},
        stream=True,
    )
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return (event for event in sse_events(response) if event[0] != "comment")


def test_a_streamed_reply_arrives_through_nginx_as_it_is_generated(front, token, model):
    conversation_id = create(front, token)
    model.reply, model.delay = ["One ", "two ", "three"], PIECE_SECONDS

    arrivals = [(name, time.monotonic()) for name, _ in stream(front, token, conversation_id)]

    assert [name for name, _ in arrivals] == ["message", "delta", "delta", "delta", "done"]
    first_delta, done = arrivals[1][1], arrivals[-1][1]
    # The model was still generating for two more pieces when the first one arrived.
    assert done - first_delta > 1.5 * PIECE_SECONDS


def test_a_websocket_turn_through_nginx_arrives_as_it_is_generated(front, token, model):
    conversation_id = create(front, token)
    grant = front.post(f"{URL}/{conversation_id}/ws-ticket", token).json()
    # The address clients reach, from X-Forwarded-Proto and -Host: not an instance's.
    assert grant["wsUrl"] == f"{front.url.replace('https', 'wss')}{URL}/{conversation_id}/ws"
    model.reply, model.delay = ["One ", "two ", "three"], PIECE_SECONDS

    ws = Client.connect(
        f"{grant['wsUrl']}?ticket={grant['ticket']}", ssl_context=front.proxy.ssl_context()
    )
    arrivals: list[tuple[str, float]] = []
    try:
        ws.send(orjson.dumps({"type": "message", "content": "Hi"}).decode())
        while not arrivals or arrivals[-1][0] not in ("done", "error"):
            frame = orjson.loads(ws.receive(timeout=10))
            arrivals.append((frame["type"], time.monotonic()))
    finally:
        ws.close()

    assert [name for name, _ in arrivals] == ["message", "delta", "delta", "delta", "done"]
    assert arrivals[-1][1] - arrivals[1][1] > 1.5 * PIECE_SECONDS
    # The socket's line is written when it closes; it names the path, never the ticket.
    deadline = time.monotonic() + 5
    while f"/{conversation_id}/ws " not in front.proxy.access_log.read_text():
        assert time.monotonic() < deadline, "nginx logged no line for the socket"
        time.sleep(0.05)
    assert grant["ticket"] not in front.proxy.access_log.read_text()


def test_a_reply_relayed_by_one_instance_is_stopped_through_the_other_within_a_second(
    front, token, model
):
    conversation_id = create(front, token)
    model.reply, model.stall_after = ["Once ", "upon ", "a ", "time"], 2
    events = stream(front, token, conversation_id, "nginx-stream")
    assert [next(events)[0] for _ in range(3)] == ["message", "delta", "delta"]

    # least_conn: with the stream open on one instance, nginx sends Stop to the other.
    started = time.monotonic()
    stop = front.post(
        f"{URL}/{conversation_id}/stop", token, headers={"X-Request-Id": "nginx-stop"}
    )
    name, data = next(events)
    elapsed = time.monotonic() - started
    model.release.set()

    assert (stop.status_code, stop.json()) == (202, {"stopping": True})
    assert front.instance_of("nginx-stop") != front.instance_of("nginx-stream")
    assert (name, data["message"]["content"], data["message"]["status"]) == (
        "stopped",
        "Once upon ",
        "stopped",
    )
    assert elapsed < 1
