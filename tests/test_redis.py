"""One Redis shared by processes and instances: the API limit, the failure throttles and
Stop hold across them; while Redis is down or hung requests go on (limits fail open, and
say so in the log), and counting resumes by itself once it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from florent import admin
from florent.assistant.stops import RedisStopSignals
from florent.errors import ApiError

from .conftest import bearer
from .factories import URL
from .serving import gunicorn
from .stack import RedisServer, redis_server
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    PASSWORD,
    cheap_password_hashes_fixture,
    make_staff,
    sign_in,
)
from .test_admin_signin import guess_together

pytestmark = pytest.mark.slow  # Redis, gunicorn


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def fresh_redis(redis: RedisServer) -> Iterator[RedisServer]:
    """The module's Redis, emptied, and running again after the test whatever it did."""
    redis.client().flushall()
    yield redis
    if redis.process.poll() is not None:
        redis.start()
    redis.resume()


# -- Stop, from one process to another ---------------------------------------------


@pytest.fixture
def two_processes(fresh_redis: RedisServer) -> Iterator[tuple[RedisStopSignals, ...]]:
    """The stop signals of two processes: one relays a reply, the other is asked to stop it."""
    signals = (RedisStopSignals(fresh_redis.url), RedisStopSignals(fresh_redis.url))
    yield signals
    for each in signals:
        each.close()


def test_a_stop_published_by_one_process_stops_the_reply_another_relays(two_processes):
    relaying, stopping = two_processes
    slot = datetime.now(UTC)
    stopped, other_stopped = threading.Event(), threading.Event()
    relaying.watch("conversation-1", slot, stopped.set)
    relaying.watch("conversation-2", slot, other_stopped.set)

    started = time.monotonic()
    stopping.publish("conversation-1", slot)

    assert stopped.wait(1)
    assert time.monotonic() - started < 1
    assert not other_stopped.wait(0.3)


def test_an_ended_watch_hears_no_stop(two_processes):
    relaying, stopping = two_processes
    slot = datetime.now(UTC)
    stopped = threading.Event()
    unwatch = relaying.watch("conversation-1", slot, stopped.set)
    unwatch()
    stopping.publish("conversation-1", slot)
    assert not stopped.wait(0.5)


def test_stops_reach_their_reply_again_once_redis_is_back(two_processes, fresh_redis):
    relaying, stopping = two_processes
    slot = datetime.now(UTC)
    stopped = threading.Event()
    relaying.watch("conversation-1", slot, stopped.set)

    fresh_redis.stop()
    # A stop that cannot be sent says so, rather than pretending.
    with pytest.raises(ApiError) as refused:
        stopping.publish("conversation-1", slot)
    assert refused.value.status == 503
    time.sleep(1.5)  # the listener has lost Redis and is trying again
    fresh_redis.start()

    # The listener subscribes again by itself (with backoff); until it has, stops are lost.
    deadline = time.monotonic() + 10
    while not stopped.is_set() and time.monotonic() < deadline:
        stopping.publish("conversation-1", slot)
        stopped.wait(0.2)
    assert stopped.is_set()


# -- Failure throttles, over two instances ----------------------------------------------


@pytest.fixture
def two_instances(make_app, jwks_server, fresh_redis, limiter_restored) -> list[Any]:
    """Two apps on one Redis, as two instances would be."""
    return [
        make_app(jwks_server.url, redis_url=fresh_redis.url, auth_failure_limit="4 per minute")
        for _ in range(2)
    ]


def test_failed_staff_sign_ins_on_two_instances_add_up(app, two_instances):
    make_staff(app, "viewer@florent.test")
    clients = [instance.test_client() for instance in two_instances]
    allowed = admin.signin.FAILURES_PER_ACCOUNT_AND_ADDRESS.split()[0]

    for attempt in range(int(allowed)):
        failed = sign_in(clients[attempt % 2], "viewer@florent.test", "wrong password!!")
        assert failed.status_code == 401

    # Three failures on one, two on the other: the right password is refused on both.
    for client in clients:
        refused = sign_in(client, "viewer@florent.test", PASSWORD)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0


def test_staff_sign_ins_sent_together_are_counted_in_redis_before_their_check(app, two_instances):
    make_staff(app, "viewer@florent.test")
    allowed = int(admin.signin.FAILURES_PER_ACCOUNT_AND_ADDRESS.split()[0])

    statuses, checked = guess_together(two_instances[0], ["viewer@florent.test"] * 12)

    assert len(checked) == allowed
    assert statuses == {401: allowed, 429: 12 - allowed}
    refused = sign_in(two_instances[1].test_client(), "viewer@florent.test", address="10.7.7.7")
    assert refused.status_code == 429


def test_failed_authentications_on_two_instances_add_up(two_instances):
    clients = [instance.test_client() for instance in two_instances]
    statuses = [
        clients[attempt % 2].get(URL, headers=bearer("not-a-token")).status_code
        for attempt in range(5)
    ]
    assert statuses == [401, 401, 401, 401, 429]


# -- The API limit, over two gunicorn instances ----------------------------------------


@pytest.fixture(scope="module")
def instances(app, database_url, jwks_server, redis) -> Iterator[list[Any]]:
    """Two instances of the service (two gevent workers each) sharing one Redis."""
    environ = {"REDIS_URL": redis.url, "RATELIMIT_DEFAULT": "5 per minute"}
    with (
        gunicorn(database_url, jwks_server.url, **environ) as first,
        gunicorn(database_url, jwks_server.url, **environ) as second,
    ):
        yield [first, second]


def list_conversations(instance: Any, token: str) -> requests.Response:
    return requests.get(f"{instance.url}{URL}", headers=bearer(token), timeout=10)


def statuses_alternating(instances: list[Any], token: str, count: int) -> list[int]:
    return [list_conversations(instances[n % 2], token).status_code for n in range(count)]


def test_two_instances_share_each_callers_api_limit(instances, fresh_redis, make_token):
    token = make_token("user_01SHARED", "org_01ACME")
    assert statuses_alternating(instances, token, 6) == [200, 200, 200, 200, 200, 429]


class Load:
    """Requests to both instances, one after another, each by a caller of its own (so no
    limit is reached), until stopped: their statuses and durations."""

    def __init__(self, instances: list[Any], make_token: Any):
        self.instances, self.make_token = instances, make_token
        self.results: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            token = self.make_token(f"user_load_{n}", "org_01ACME")
            started = time.monotonic()
            status = list_conversations(self.instances[n % 2], token).status_code
            self.results.append((status, time.monotonic() - started))
            n += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


def limiter_errors(instances: list[Any]) -> list[dict[str, Any]]:
    return [
        line
        for instance in instances
        for line in list(instance.lines)
        if line.get("logger") == "flask-limiter" and line.get("level") == "error"
    ]


def test_requests_go_on_while_redis_restarts_and_limits_count_again_after(
    instances, fresh_redis, make_token
):
    errors_before = len(limiter_errors(instances))
    with Load(instances, make_token) as load:
        time.sleep(0.5)
        fresh_redis.stop()
        time.sleep(2)
        # While Redis is down nothing is counted: one caller goes past its limit.
        token = make_token("user_01OUTAGE", "org_01ACME")
        assert statuses_alternating(instances, token, 7) == [200] * 7
        fresh_redis.start()
        time.sleep(1)

    statuses = [status for status, _ in load.results]
    assert len(statuses) > 20 and set(statuses) == {200}
    assert len(limiter_errors(instances)) > errors_before  # the outage is in the log
    # Counting resumes with the first request after Redis is back (it came back empty).
    token = make_token("user_01AFTER", "org_01ACME")
    assert statuses_alternating(instances, token, 6) == [200, 200, 200, 200, 200, 429]


def test_a_hung_redis_costs_a_request_about_half_a_second(instances, fresh_redis, make_token):
    fresh_redis.pause()
    durations = []
    for n in range(4):
        started = time.monotonic()
        response = list_conversations(instances[n % 2], make_token(f"user_hung_{n}", "org_01ACME"))
        durations.append(time.monotonic() - started)
        assert response.status_code == 200
    fresh_redis.resume()

    assert all(0.4 < duration < 1.5 for duration in durations), durations
    token = make_token("user_01RESUMED", "org_01ACME")
    assert statuses_alternating(instances, token, 6) == [200, 200, 200, 200, 200, 429]
