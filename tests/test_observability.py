"""Request ids, the JSON access log, health and readiness."""

from __future__ import annotations

import json
import logging
import os

import pytest


def access_lines(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == "florent.access"]


def test_every_response_carries_a_generated_request_id(client, alice):
    first = client.post("/api/florent/conversations", headers=alice)
    second = client.get("/api/nope")
    ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)


def test_a_safe_client_request_id_is_kept(client, alice):
    response = client.get(
        "/api/florent/conversations", headers={**alice, "X-Request-Id": "abc-123.X_y:z"}
    )
    assert response.headers["X-Request-Id"] == "abc-123.X_y:z"


@pytest.mark.parametrize("supplied", ["has space", "a" * 129, "<script>", 'quote"d', "é"])
def test_an_unsafe_request_id_is_replaced(client, alice, supplied):
    response = client.get("/api/florent/conversations", headers={**alice, "X-Request-Id": supplied})
    assert response.headers["X-Request-Id"] != supplied
    assert len(response.headers["X-Request-Id"]) == 32


def test_one_json_log_line_per_request_without_secrets(client, alice, robot, api_key, caplog):
    caplog.set_level(logging.INFO, logger="florent.access")
    client.post("/api/florent/conversations", headers={**alice, "X-Request-Id": "req-1"})
    client.get("/api/florent/conversations?cursor=secret-cursor", headers=robot)
    client.post("/api/florent/conversations", headers={"Authorization": "Bearer not-a-token"})

    lines = access_lines(caplog)
    assert len(lines) == 3
    first = lines[0]
    assert {k: first[k] for k in ("method", "path", "status", "request_id", "org_id")} == {
        "method": "POST",
        "path": "/api/florent/conversations",
        "status": 201,
        "request_id": "req-1",
        "org_id": "org_01ACME",
    }
    assert isinstance(first["duration_ms"], float)
    assert lines[2]["status"] == 401 and lines[2]["org_id"] is None

    from florent.observability import JsonFormatter

    rendered = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert all(json.loads(line) for line in rendered.splitlines())
    token = alice["Authorization"].split()[1]
    for secret in (token, api_key[1], "secret-cursor", "not-a-token"):
        assert secret not in rendered


def test_other_log_formats_still_get_process_and_thread_ids(app):
    """The app's logging set-up leaves records whole: gunicorn's own error log prints
    `[%(process)d]`, which once failed on every line a worker logged after start."""
    from gunicorn.glogging import Logger

    record = logging.getLogger("gunicorn.error").makeRecord(
        "gunicorn.error", logging.INFO, __file__, 1, "Worker exiting (pid: %s)", (123,), None
    )
    line = logging.Formatter(f"{Logger.error_fmt} %(thread)d").format(record)
    assert f"[{os.getpid()}] [INFO] Worker exiting (pid: 123)" in line


def test_healthz_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}
