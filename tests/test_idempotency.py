"""POST /api/florent/conversations with Idempotency-Key: at most one conversation per
(caller, key); retries replay the original 201."""

from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import func, select, text

from florent import housekeeping
from florent.conversations import idempotency
from florent.extensions import db
from florent.models import Conversation

from .factories import URL


def count_conversations(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Conversation))


def test_a_retry_with_the_same_key_and_body_replays_the_original_201(app, client, alice):
    headers = {**alice, "Idempotency-Key": "create-1"}
    first = client.post(URL, json={"title": "Once"}, headers=headers)
    client.patch(
        f"{URL}/{first.get_json()['conversation']['_id']}", json={"title": "Renamed"}, headers=alice
    )
    again = client.post(URL, data=b'{ "title" :  "Once" }', headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.data == first.data  # the original response, byte for byte
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count_conversations(app) == 1


def test_the_same_key_with_a_different_body_is_422(app, client, alice):
    headers = {**alice, "Idempotency-Key": "create-2"}
    assert client.post(URL, json={"title": "A"}, headers=headers).status_code == 201

    response = client.post(URL, json={"title": "B"}, headers=headers)

    assert response.status_code == 422
    assert response.get_json() == {"error": "idempotency_key_reused"}
    assert count_conversations(app) == 1


def test_keys_belong_to_a_caller(app, client, alice, bob):
    first = client.post(URL, json={}, headers={**alice, "Idempotency-Key": "shared"})
    second = client.post(URL, json={}, headers={**bob, "Idempotency-Key": "shared"})
    assert first.status_code == second.status_code == 201
    assert first.get_json()["conversation"]["_id"] != second.get_json()["conversation"]["_id"]
    assert count_conversations(app) == 2


def test_quoted_and_bare_keys_are_the_same_key(app, client, alice):
    client.post(URL, json={}, headers={**alice, "Idempotency-Key": '"k-1"'})
    replay = client.post(URL, json={}, headers={**alice, "Idempotency-Key": "k-1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert count_conversations(app) == 1


@pytest.mark.parametrize("key", ["", '""', "x" * 256, "é", "tab\there"])
def test_a_malformed_key_is_400(app, client, alice, key):
    response = client.post(URL, json={}, headers={**alice, "Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_header"
    assert count_conversations(app) == 0


def test_an_invalid_body_is_400_and_does_not_burn_the_key(app, client, alice):
    headers = {**alice, "Idempotency-Key": "k-invalid"}
    assert client.post(URL, json={"title": ""}, headers=headers).status_code == 400
    assert client.post(URL, json={"title": "ok"}, headers=headers).status_code == 201


def test_keys_expire_after_24_hours(app, client, alice):
    headers = {**alice, "Idempotency-Key": "old"}
    first = client.post(URL, json={"title": "A"}, headers=headers)
    with app.app_context():
        db.session.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        )
        db.session.commit()

    second = client.post(URL, json={"title": "B"}, headers=headers)

    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert second.get_json()["conversation"]["_id"] != first.get_json()["conversation"]["_id"]
    assert count_conversations(app) == 2


def test_purge_deletes_only_expired_keys(app, client, alice):
    client.post(URL, json={}, headers={**alice, "Idempotency-Key": "fresh"})
    client.post(URL, json={}, headers={**alice, "Idempotency-Key": "stale"})
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key = 'stale'"
            )
        )
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["purge-idempotency-keys"])

    assert "Deleted 1 " in result.output
    with app.app_context():
        assert db.session.scalars(text("SELECT key FROM idempotency_keys")).all() == ["fresh"]


def test_expired_keys_are_purged_by_the_service_itself_in_batches(app, client, alice, monkeypatch):
    monkeypatch.setattr(idempotency, "PURGE_BATCH", 3)
    housekeeping.forget("idempotency keys")
    for n in range(8):
        client.post(URL, json={}, headers={**alice, "Idempotency-Key": f"old-{n}"})
    with app.app_context():
        db.session.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
        )
        db.session.commit()
    housekeeping.forget("idempotency keys")

    client.post(URL, json={}, headers={**alice, "Idempotency-Key": "new"})

    with app.app_context():
        assert db.session.scalars(text("SELECT key FROM idempotency_keys")).all() == ["new"]


def test_a_key_goes_with_its_conversation(app, client, alice):
    headers = {**alice, "Idempotency-Key": "gone-with-it"}
    first = client.post(URL, json={"title": "Doomed"}, headers=headers)
    conversation_id = first.get_json()["conversation"]["_id"]
    assert client.delete(f"{URL}/{conversation_id}", headers=alice).status_code == 204

    again = client.post(URL, json={"title": "Doomed"}, headers=headers)

    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["conversation"]["_id"] != conversation_id
    assert client.get(again.headers["Location"], headers=alice).status_code == 200


def test_eight_simultaneous_requests_with_one_key_create_one_conversation(app, alice, live_server):
    barrier = threading.Barrier(8)
    results: list[requests.Response] = []

    def create() -> None:
        barrier.wait()
        results.append(
            requests.post(
                live_server + URL,
                json={"title": "race"},
                headers={**alice, "Idempotency-Key": "race-key"},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in results] == [201] * 8
    assert len({r.json()["conversation"]["_id"] for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 7
    assert count_conversations(app) == 1
