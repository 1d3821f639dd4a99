"""REDIS_URL, one setting for what processes and instances share (rate limits, failure
throttles, stop signals); without it each process keeps its own, and production says so."""

from __future__ import annotations

import logging

import pytest
from limits.storage import MemoryStorage, RedisStorage

from florent.assistant.stops import PostgresStopSignals, RedisStopSignals
from florent.config import ConfigError, read_settings

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens: these apps never reach it


def test_redis_url_is_where_limits_and_throttles_count():
    settings = read_settings({"REDIS_URL": "redis://cache.internal:6379/0"})
    assert settings.redis_url == "redis://cache.internal:6379/0"
    assert settings.limits_storage_uri == "redis://cache.internal:6379/0"


def test_ratelimit_storage_uri_still_overrides_where_limits_count():
    settings = read_settings(
        {"REDIS_URL": "redis://cache:6379/0", "RATELIMIT_STORAGE_URI": "redis://limits:6379/1"}
    )
    assert (settings.redis_url, settings.limits_storage_uri) == (
        "redis://cache:6379/0",
        "redis://limits:6379/1",
    )


def test_without_redis_limits_count_in_each_process():
    settings = read_settings({})
    assert (settings.redis_url, settings.limits_storage_uri) == (None, "memory://")


@pytest.mark.parametrize("url", ["http://cache:6379", "cache:6379", "redis://", "unix:///r.sock"])
def test_a_redis_url_that_is_not_one_is_refused(url):
    with pytest.raises(ConfigError, match="REDIS_URL"):
        read_settings({"REDIS_URL": url})


def test_with_redis_every_shared_thing_goes_there_with_short_timeouts(
    make_app, jwks_server, limiter_restored
):
    app = make_app(jwks_server.url, redis_url=NOWHERE)

    assert isinstance(app.extensions["florent.assistant"].stops, RedisStopSignals)
    throttles = [app.extensions["florent.auth"].failures, app.extensions["florent.signin_throttle"]]
    for throttle in throttles:
        assert isinstance(throttle.storage, RedisStorage)
        options = throttle.storage.storage.connection_pool.connection_kwargs
        assert (options["host"], options["port"]) == ("127.0.0.1", 1)
        assert (options["socket_connect_timeout"], options["socket_timeout"]) == (0.5, 0.5)
    assert app.config["RATELIMIT_STORAGE_URI"] == NOWHERE
    assert app.config["RATELIMIT_STORAGE_OPTIONS"] == {
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
    }


def test_without_redis_each_process_counts_alone_and_stops_go_through_postgresql(app):
    assert isinstance(app.extensions["florent.assistant"].stops, PostgresStopSignals)
    assert isinstance(app.extensions["florent.auth"].failures.storage, MemoryStorage)
    assert isinstance(app.extensions["florent.signin_throttle"].storage, MemoryStorage)
    assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"


def per_process_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and "count per process" in record.getMessage()
    ]


def test_production_without_redis_warns_at_start_that_limits_are_per_process(
    make_app, jwks_server, caplog, limiter_restored
):
    with caplog.at_level(logging.WARNING):
        make_app(jwks_server.url, env="production")
    assert len(per_process_warnings(caplog)) == 1
    assert "Set REDIS_URL" in per_process_warnings(caplog)[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        make_app(jwks_server.url, env="production", redis_url=NOWHERE)
        make_app(jwks_server.url)  # development: one process, nothing to warn about
    assert per_process_warnings(caplog) == []
