"""POST .../messages as a chat turn: Florent's reply from a real OpenAI-compatible model
server on loopback, waited for as JSON or streamed as server-sent events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import requests
from flask import Flask
from jsonschema import Draft202012Validator
from sqlalchemy import delete, event, select, text
from werkzeug.serving import make_server

from florent import create_app
from florent.assistant.model_server import COMPLETION_MAX_BYTES
from florent.assistant.turns import STORE_TURN
from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import Conversation, Message

from .conftest import bearer, dispose_engines, free_port, make_settings, recorded_statements
from .factories import TESTER, URL, create_conversation
from .fake_model_server import COMPLETIONS_PATH, STALL_LIMIT_S

STREAM = {"Accept": "text/event-stream"}
API_KEY = "sk-test-florent"


# -- Fixtures -------------------------------------------------------------------


def close_app(app: Flask) -> None:
    app.extensions["florent.assistant"].close()
    with app.app_context():
        dispose_engines()


@pytest.fixture(scope="module")
def florent(app, database_url, jwks_server, instance_path, model_server) -> Iterator[Flask]:
    """The app with a model server configured (`app` has built the schema already)."""
    settings = make_settings(
        database_url,
        jwks_server.url,
        llm_base_url=model_server.base_url,
        llm_api_key=API_KEY,
        llm_connect_timeout=2,
        llm_read_timeout=5,
        llm_turn_timeout=20,
    )
    florent = create_app(settings, instance_path=str(instance_path))
    florent.config["TESTING"] = True
    yield florent
    close_app(florent)


@pytest.fixture
def chat(florent: Flask):
    return florent.test_client()


@pytest.fixture
def florent_with(make_app, jwks_server, model):
    """Another app with a model server and other reply settings."""
    apps: list[Flask] = []

    def build(**settings: Any) -> Flask:
        settings.setdefault("llm_base_url", model.base_url)
        built = make_app(jwks_server.url, **settings)
        built.config["TESTING"] = True
        apps.append(built)
        return built

    yield build
    for built in apps:
        built.extensions["florent.assistant"].close()


@pytest.fixture(scope="module")
def florent_server(florent: Flask) -> Iterator[str]:
    """The app with a model server, served over real HTTP on loopback."""
    server = make_server("127.0.0.1", 0, florent, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def document(app) -> dict[str, Any]:
    return app.test_client().get("/api/openapi.json").get_json()


# -- Helpers --------------------------------------------------------------------


def messages_url(conversation_id: str) -> str:
    return f"{URL}/{conversation_id}/messages"


def parse_events(chunks: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """(event, data) of each server-sent event, as the chunks arrive."""
    buffer = b""
    for piece in chunks:
        buffer += piece
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in raw.split(b"\n"))
            yield fields[b"event"].decode(), orjson.loads(fields[b"data"])
    assert buffer == b"", buffer


def stream_turn(client, caller, conversation_id: str, content: str):
    response = client.post(
        messages_url(conversation_id),
        json={"content": content},
        headers={**caller, **STREAM},
        buffered=False,
    )
    return response, parse_events(response.response)


def stored(florent: Flask, conversation_id: str) -> tuple[Conversation, list[tuple[str, str]]]:
    with florent.app_context():
        conversation = db.session.scalars(
            select(Conversation).where(Conversation.id == conversation_id)
        ).one()
        rows = db.session.execute(
            select(Message.role, Message.content)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.created_at, Message.id)
        ).all()
        db.session.expunge_all()
        return conversation, [tuple(row) for row in rows]


def validate(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    Draft202012Validator({**schema, "components": document["components"]}).validate(value)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- Turns, waited for and streamed ------------------------------------------------


def test_json_turn_stores_both_messages_and_answers_201(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Launch")

    response = chat.post(messages_url(conversation["_id"]), json={"content": "Hi!"}, headers=alice)

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"messages", "conversation"}
    user, reply = body["messages"]
    assert (user["role"], user["content"]) == ("user", "Hi!")
    assert (reply["role"], reply["content"]) == ("assistant", "Hello, I am Florent.")
    assert user["conversationId"] == reply["conversationId"] == conversation["_id"]
    assert user["createdAt"] < reply["createdAt"]
    updated = body["conversation"]
    assert updated["messageCount"] == 2
    assert updated["lastMessageAt"] == updated["updatedAt"] == reply["createdAt"]
    row, messages = stored(florent, conversation["_id"])
    assert messages == [("user", "Hi!"), ("assistant", "Hello, I am Florent.")]
    assert (row.message_count, row.reply_started_at) == (2, None)
    detail = chat.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()
    assert detail["messages"] == [user, reply] and detail["conversation"] == updated

    (sent,) = model.requests
    assert sent["path"] == COMPLETIONS_PATH
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["body"]["model"] == conversation["model"] == "florent-test-model"
    assert sent["body"]["stream"] is True


def test_streamed_turn_sends_message_deltas_then_done(florent, chat, alice, model, document):
    conversation = create_conversation(chat, alice, title="Launch")
    model.reply = ["Bon", "jour ", "😀", " é"]

    response, events = stream_turn(chat, alice, conversation["_id"], "Salut")
    events = list(events)

    assert response.status_code == 201
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert len(response.headers["X-Request-Id"]) == 32
    names = [name for name, _ in events]
    assert names == ["message", "delta", "delta", "delta", "delta", "done"]
    first, done = events[0][1], events[-1][1]
    assert (first["message"]["role"], first["message"]["content"]) == ("user", "Salut")
    assert first["conversation"]["messageCount"] == 1
    assert [data for name, data in events if name == "delta"] == [
        {"text": "Bon"},
        {"text": "jour "},
        {"text": "😀"},
        {"text": " é"},
    ]
    assert (done["message"]["role"], done["message"]["content"]) == ("assistant", "Bonjour 😀 é")
    assert done["conversation"]["messageCount"] == 2
    assert done["conversation"]["lastMessageAt"] == done["message"]["createdAt"]
    for name, data in events:
        schema = {"delta": "FlorentReplyDelta"}.get(name, "FlorentMessageCreated")
        validate(document, ref(schema), data)
    _, messages = stored(florent, conversation["_id"])
    assert messages == [("user", "Salut"), ("assistant", "Bonjour 😀 é")]


@pytest.mark.parametrize("chunked", [True, False])
def test_each_piece_is_relayed_as_it_arrives_chunked_or_not(florent, chat, alice, model, chunked):
    conversation = create_conversation(chat, alice, title="Pieces")
    model.chunked = chunked
    model.stall_after = 2  # the model says two pieces, then waits to be released

    started = time.monotonic()
    _, events = stream_turn(chat, alice, conversation["_id"], "Hi")
    first = [next(events) for _ in range(3)]

    # Relayed while the model still waits, not when its body ends.
    assert time.monotonic() - started < STALL_LIMIT_S / 2
    assert first[1:] == [("delta", {"text": "Hello"}), ("delta", {"text": ", I am "})]
    model.release.set()
    assert [name for name, _ in events] == ["delta", "delta", "done"]
    assert stored(florent, conversation["_id"])[1][-1] == ("assistant", "Hello, I am Florent.")


@pytest.mark.parametrize(
    ("accept", "streamed"),
    [
        ("text/event-stream;charset=utf-8", True),
        ("TEXT/EVENT-STREAM", True),
        ("application/json, text/event-stream", True),
        ("text/event-stream;q=0", False),
        ("text/*", False),
        ("*/*", False),
    ],
)
def test_a_stream_is_sent_when_accept_names_it(chat, alice, model, accept, streamed):
    conversation = create_conversation(chat, alice)
    response = chat.post(
        messages_url(conversation["_id"]),
        json={"content": "Hi"},
        headers={**alice, "Accept": accept},
    )
    assert response.status_code == 201
    assert response.mimetype == ("text/event-stream" if streamed else "application/json")


def test_a_nul_in_the_reply_is_relayed_and_stored_as_the_replacement_character(
    florent, chat, alice, model
):
    """PostgreSQL's text cannot hold U+0000, which a model may well send in JSON."""
    conversation = create_conversation(chat, alice, title="Nul")
    model.reply = ["a\x00b", " c"]

    response = chat.post(messages_url(conversation["_id"]), json={"content": "Hi"}, headers=alice)
    _, events = stream_turn(chat, alice, conversation["_id"], "Again")

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["messages"][1]["content"] == "a\ufffdb c"
    assert [data for name, data in events if name == "delta"] == [
        {"text": "a\ufffdb"},
        {"text": " c"},
    ]
    assert stored(florent, conversation["_id"])[1][1::2] == [("assistant", "a\ufffdb c")] * 2


def test_a_model_server_that_ignores_stream_true_still_replies(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Whole")
    model.whole_completion = True

    _, events = stream_turn(chat, alice, conversation["_id"], "Hi")

    assert [name for name, _ in events] == ["message", "delta", "done"]
    assert stored(florent, conversation["_id"])[1][-1] == ("assistant", "Hello, I am Florent.")


def test_a_completion_sent_whole_is_held_to_the_length_of_a_streamed_reply(
    florent, chat, alice, model
):
    conversation = create_conversation(chat, alice, title="Whole and long")
    model.whole_completion = True
    model.reply = ["word " * 20_001]  # 100,005 characters

    response = chat.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert_unavailable(response, "hi")
    assert_only_the_person_message(florent, conversation["_id"], "hi")


def test_a_completion_sent_whole_is_read_no_further_than_its_byte_limit(
    florent, chat, alice, model
):
    """However short its text: a body past the limit is a broken server's, not a reply."""
    conversation = create_conversation(chat, alice, title="Whole and padded")
    model.whole_completion = True
    model.completion_padding = COMPLETION_MAX_BYTES

    response = chat.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert_unavailable(response, "hi")
    assert_only_the_person_message(florent, conversation["_id"], "hi")


@pytest.mark.parametrize(
    "endless",
    [b"x", b"data: " + b"x" * 250 + b"\n"],
    ids=["a line never ending", "an event never ending"],
)
def test_a_stream_is_read_no_further_than_its_longest_event(
    app, florent_with, alice, model, endless
):
    """A model server that sends a line, or an event, without end is hung up on once it
    is longer than any reply could be: not read, and held, until the turn's deadline."""
    app = florent_with(llm_turn_timeout=10)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Endless")
    model.endless = endless
    started = time.monotonic()

    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert_unavailable(response, "hi")
    assert time.monotonic() - started < 5


def test_replies_match_the_openapi_document(chat, client, alice, model, document):
    operation = document["paths"]["/florent/conversations/{conversation_id}/messages"]["post"]
    content = operation["responses"]["201"]["content"]
    assert "text/event-stream" in content
    assert {"201", "400", "401", "404", "409", "502"} <= set(operation["responses"])
    json_201 = content["application/json"]["schema"]
    conversation = create_conversation(chat, alice, title="Spec")

    answered = chat.post(messages_url(conversation["_id"]), json={"content": "a"}, headers=alice)
    unanswered = client.post(
        messages_url(conversation["_id"]), json={"content": "b"}, headers=alice
    )
    model.status = 500
    failed = chat.post(messages_url(conversation["_id"]), json={"content": "c"}, headers=alice)

    validate(document, json_201, answered.get_json())
    validate(document, json_201, unanswered.get_json())
    assert failed.status_code == 502
    validate(document, ref("ErrorResponse"), failed.get_json())


# -- Without a model server -----------------------------------------------------


def test_without_a_model_server_the_message_is_stored_and_no_reply_is_made(app, client, alice):
    conversation = create_conversation(client, alice)

    for headers in (alice, {**alice, **STREAM}):
        response = client.post(
            messages_url(conversation["_id"]), json={"content": "Hello"}, headers=headers
        )
        assert response.status_code == 201
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert set(body) == {"message", "conversation", "assistant"}
        assert body["assistant"] is None
        assert body["message"]["role"] == "user"

    row, messages = stored(app, conversation["_id"])
    assert messages == [("user", "Hello"), ("user", "Hello")]
    # No reply, no title either: without a model this endpoint behaves as before.
    assert (row.message_count, row.title, row.reply_started_at) == (2, "New conversation", None)


# -- The prompt -----------------------------------------------------------------


def test_prompt_names_the_person_gives_their_local_time_and_the_history_in_order(
    chat, alice, model
):
    conversation = create_conversation(
        chat, alice, title="Trip", userDisplay="Alice Martin", timezone="Asia/Kathmandu"
    )
    model.reply = ["First reply"]
    chat.post(messages_url(conversation["_id"]), json={"content": "one"}, headers=alice)
    model.reply = ["Second reply"]
    before = datetime.now(UTC)
    chat.post(messages_url(conversation["_id"]), json={"content": "two"}, headers=alice)
    after = datetime.now(UTC)

    system, *history = model.last_messages
    assert system["role"] == "system"
    assert "Florent" in system["content"] and "Alice Martin" in system["content"]
    zone = ZoneInfo("Asia/Kathmandu")
    local_times = {f"{t.astimezone(zone):%A %d %B %Y, %H:%M}" for t in (before, after)}
    assert any(f"{t} (Asia/Kathmandu, UTC+05:45)" in system["content"] for t in local_times)
    assert history == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "First reply"},
        {"role": "user", "content": "two"},
    ]


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "../../etc/passwd", None])
def test_an_unknown_time_zone_falls_back_to_utc(chat, alice, model, timezone):
    fields = {"timezone": timezone} if timezone else {}
    conversation = create_conversation(chat, alice, title="Zone", **fields)
    before = datetime.now(UTC)
    chat.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)
    after = datetime.now(UTC)

    system = model.last_messages[0]["content"]
    assert "You are talking with" not in system  # no userDisplay: no name is made up
    assert any(f"{t:%A %d %B %Y, %H:%M} UTC" in system for t in (before, after))


@pytest.mark.parametrize(
    ("budget", "kept"),
    [
        (100, ["u1", "a1", "u2", "a2", "u3"]),
        (99, ["u2", "a2", "u3"]),  # a1 would open the history without its question
        (60, ["u2", "a2", "u3"]),
        (59, ["u3"]),
        (1, ["u3"]),  # the person's new message is always sent, whatever its length
    ],
)
def test_the_history_is_the_newest_messages_within_the_budget(
    florent_with, alice, model, budget, kept
):
    app = florent_with(llm_history_chars=budget)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Budget")
    for n in (1, 2):
        model.reply = [f"a{n}" * 10]
        assert chat_turn(client, alice, conversation["_id"], f"u{n}" * 10).status_code == 201
    model.reply = ["done"]
    assert chat_turn(client, alice, conversation["_id"], "u3" * 10).status_code == 201

    # Five messages of 20 code points each.
    assert [m["content"][:2] for m in model.last_messages[1:]] == kept


def test_the_history_budget_counts_code_points(florent_with, alice, model):
    app = florent_with(llm_history_chars=21)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Wide")
    model.reply = ["é" * 10]
    assert chat_turn(client, alice, conversation["_id"], "🙂" * 10).status_code == 201
    assert chat_turn(client, alice, conversation["_id"], "x").status_code == 201
    assert [m["content"] for m in model.last_messages[1:]] == ["🙂" * 10, "é" * 10, "x"]


def chat_turn(client, caller, conversation_id: str, content: str):
    return client.post(messages_url(conversation_id), json={"content": content}, headers=caller)


# -- Bounds -----------------------------------------------------------------------


def test_a_caller_has_at_most_three_replies_in_progress(
    florent, florent_server, chat, alice, bob, model
):
    conversations = [create_conversation(chat, alice, title=f"C{n}")["_id"] for n in range(4)]
    model.stall_after = 1  # replies stay open until released

    def send(conversation_id: str) -> requests.Response:
        return requests.post(
            f"{florent_server}{messages_url(conversation_id)}",
            json={"content": "hi"},
            headers=alice,
            timeout=20,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        replying = [pool.submit(send, c) for c in conversations[:3]]
        assert wait_until(lambda: len(model.requests) == 3, timeout=10)
        fourth = chat.post(messages_url(conversations[3]), json={"content": "hi"}, headers=alice)
        assert fourth.status_code == 429
        assert fourth.get_json() == {"error": "too_many_replies"}
        assert int(fourth.headers["Retry-After"]) > 0
        # Someone else is not held back by Alice's replies.
        mine = create_conversation(chat, bob, title="Bob's")["_id"]
        model.release.set()
        assert chat.post(messages_url(mine), json={"content": "hi"}, headers=bob).status_code == 201
        assert [f.result().status_code for f in replying] == [201, 201, 201]

    row, messages = stored(florent, conversations[3])
    assert (row.message_count, messages) == (0, [])
    again = chat.post(messages_url(conversations[3]), json={"content": "hi"}, headers=alice)
    assert again.status_code == 201


def test_turns_started_at_once_still_leave_at_most_three_replies(
    florent, florent_server, chat, alice, model
):
    conversations = [create_conversation(chat, alice, title=f"C{n}")["_id"] for n in range(8)]
    model.stall_after = 1
    together = threading.Barrier(len(conversations))

    def send(conversation_id: str) -> int:
        together.wait()
        return requests.post(
            f"{florent_server}{messages_url(conversation_id)}",
            json={"content": "hi"},
            headers=alice,
            timeout=20,
        ).status_code

    with ThreadPoolExecutor(max_workers=len(conversations)) as pool:
        sent = [pool.submit(send, c) for c in conversations]
        assert wait_until(lambda: sum(f.done() for f in sent) == 5, timeout=10)
        model.release.set()
        statuses = sorted(f.result() for f in sent)
    assert statuses == [201] * 3 + [429] * 5


def test_a_key_has_at_most_three_replies_in_progress_whoever_it_acts_for(
    florent, florent_server, chat, model
):
    """A key is one caller, as its rate limit counts it: naming other people (or itself)
    is no way round the cap."""
    with florent.app_context():
        _, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER, can_impersonate=True)
    as_itself = bearer(plaintext)
    callers = [{**as_itself, "X-Act-As-User": f"user_0{n}PERSON"} for n in range(3)]
    callers.append(as_itself)
    conversations = [create_conversation(chat, caller)["_id"] for caller in callers]
    model.stall_after = 1

    def send(n: int) -> requests.Response:
        return requests.post(
            f"{florent_server}{messages_url(conversations[n])}",
            json={"content": "hi"},
            headers=callers[n],
            timeout=20,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        replying = [pool.submit(send, n) for n in range(3)]
        assert wait_until(lambda: len(model.requests) == 3, timeout=10)
        fourth = chat.post(
            messages_url(conversations[3]), json={"content": "hi"}, headers=as_itself
        )
        assert (fourth.status_code, fourth.get_json()) == (429, {"error": "too_many_replies"})
        model.release.set()
        assert [f.result().status_code for f in replying] == [201, 201, 201]
    again = chat.post(messages_url(conversations[3]), json={"content": "hi"}, headers=as_itself)
    assert again.status_code == 201


def test_a_turn_needs_room_for_the_message_and_its_reply(florent_with, alice, model):
    app = florent_with(max_messages=5)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Small")
    assert chat_turn(client, alice, conversation["_id"], "one").status_code == 201
    assert chat_turn(client, alice, conversation["_id"], "two").status_code == 201

    full = chat_turn(client, alice, conversation["_id"], "three")

    assert (full.status_code, full.get_json()) == (409, {"error": "conversation_full"})
    row, messages = stored(app, conversation["_id"])
    assert (row.message_count, len(messages), row.reply_started_at) == (4, 4, None)


@pytest.mark.slow  # a large data set
def test_a_turn_reads_only_the_history_that_fits(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Huge")
    with florent.app_context():
        # A bulk load, past the service's statement timeout.
        db.session.execute(text("SET LOCAL statement_timeout = 0"))
        db.session.execute(
            text(
                "INSERT INTO messages (org_id, id, conversation_id, role, content, created_at) "
                "SELECT 'org_01ACME', lpad(to_hex(n), 24, '0'), :id, CASE WHEN n % 2 = 1 THEN 'user' "
                "ELSE 'assistant' END, repeat('x', 30000), now() - (3000 - n) * interval '1 ms' "
                "FROM generate_series(1, 2000) AS n"
            ),
            {"id": conversation["_id"]},
        )
        db.session.execute(
            text("UPDATE conversations SET message_count = 2000 WHERE id = :id"),
            {"id": conversation["_id"]},
        )
        db.session.commit()

    with recorded_statements(florent) as statements:
        assert chat_turn(chat, alice, conversation["_id"], "and now?").status_code == 201

    sent = model.last_messages[1:]
    assert sum(len(m["content"]) for m in sent) <= 48_000 and sent[-1]["content"] == "and now?"
    (history,) = [sql for sql, _ in statements if "content_chars" in sql]
    assert "sum(messages.content_chars) OVER" in history and "LIMIT" in history


# -- Failures ---------------------------------------------------------------------


def assert_unavailable(response, content: str) -> None:
    """A 502 that says which message of the person's was stored all the same."""
    assert response.status_code == 502
    body = response.get_json()
    assert set(body) == {"error", "message"} and body["error"] == "assistant_unavailable"
    assert (body["message"]["role"], body["message"]["content"]) == ("user", content)


def assert_only_the_person_message(app: Flask, conversation_id: str, *contents: str) -> None:
    row, messages = stored(app, conversation_id)
    assert messages == [("user", c) for c in contents]
    assert (row.message_count, row.reply_started_at) == (len(contents), None)


def test_a_model_server_error_is_502_and_keeps_the_person_message(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Errors")
    model.status = 500

    response = chat.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert_unavailable(response, "hi")
    assert_only_the_person_message(florent, conversation["_id"], "hi")
    model.status = 200  # the conversation is free for the next turn
    again = chat.post(messages_url(conversation["_id"]), json={"content": "again"}, headers=alice)
    assert again.status_code == 201
    assert again.get_json()["conversation"]["messageCount"] == 3


@pytest.mark.parametrize(
    "failure", [{"drop_after": 2}, {"end_after": 2}, {"error_after": 2}, {"reply": ["", " "]}]
)
def test_a_reply_cut_short_is_an_error_event_and_nothing_half_is_stored(
    florent, chat, alice, model, failure
):
    conversation = create_conversation(chat, alice, title="Cut")
    for name, value in failure.items():
        setattr(model, name, value)

    response, events = stream_turn(chat, alice, conversation["_id"], "hi")
    events = list(events)

    assert response.status_code == 201
    assert events[0][0] == "message"
    assert events[-1] == ("error", {"error": "assistant_unavailable"})
    assert [name for name, _ in events[1:-1]] == ["delta"] * len(events[1:-1])
    assert_only_the_person_message(florent, conversation["_id"], "hi")


def test_a_model_failing_midway_is_502_for_a_waiting_client(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Midway")
    model.drop_after = 2

    response = chat.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert_unavailable(response, "hi")
    assert_only_the_person_message(florent, conversation["_id"], "hi")


def test_a_model_server_that_is_down_is_502(florent_with, alice):
    app = florent_with(llm_base_url=f"http://127.0.0.1:{free_port()}/v1")
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Down")

    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert response.status_code == 502
    assert_only_the_person_message(app, conversation["_id"], "hi")


def test_a_silent_model_times_out_after_the_read_timeout(florent_with, alice, model):
    app = florent_with(llm_read_timeout=0.3)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Slow")
    model.stall_after = 1

    started = time.monotonic()
    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)
    waited = time.monotonic() - started

    assert response.status_code == 502
    assert 0.3 <= waited < 3
    assert_only_the_person_message(app, conversation["_id"], "hi")

    response, events = stream_turn(client, alice, conversation["_id"], "still there?")
    assert [name for name, _ in events] == ["message", "delta", "error"]
    assert_only_the_person_message(app, conversation["_id"], "hi", "still there?")


def test_a_model_that_does_not_answer_times_out_on_a_reused_connection_too(
    florent_with, alice, model
):
    # The body of a reply is read without a socket timeout (the reply's timer watches
    # it); urllib3 sets the read timeout again for the next request's head.
    app = florent_with(llm_read_timeout=0.3)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Mute")
    first = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)
    assert first.status_code == 201
    model.head_delay = 5

    started = time.monotonic()
    response = client.post(messages_url(conversation["_id"]), json={"content": "?"}, headers=alice)
    waited = time.monotonic() - started

    assert model.requests[-1]["client"] == model.requests[-2]["client"]  # one connection
    assert response.status_code == 502
    assert 0.3 <= waited < 3


@pytest.mark.slow  # waits out the model's two delays
def test_the_read_timeout_bounds_each_wait_not_the_head_and_the_first_bytes_together(
    florent_with, alice, model
):
    app = florent_with(llm_read_timeout=2)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Thinking")
    model.head_delay = model.body_delay = 1.4  # each wait under the timeout, both over it

    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert response.status_code == 201


def test_a_pooled_connection_the_model_server_dropped_is_replaced_not_a_failed_turn(
    florent, chat, alice, model
):
    conversation = create_conversation(chat, alice, title="Kept alive")
    first = chat.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)
    assert first.status_code == 201
    model.drop_reused = True  # the connection the first turn left in the pool is closed

    again = chat.post(messages_url(conversation["_id"]), json={"content": "?"}, headers=alice)

    assert again.status_code == 201
    assert model.dropped == 1
    assert model.requests[-1]["client"] != model.requests[-2]["client"]


def test_a_request_the_model_server_took_and_then_died_on_is_not_sent_again(
    florent_with, alice, model
):
    app = florent_with(llm_connect_timeout=0.3)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Once")
    model.die_after = 0.5  # later than a dropped keep-alive connection fails

    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert response.status_code == 502
    assert model.dropped == 1  # asked once: the generation may have run


def test_a_model_that_lingers_after_done_still_gives_its_whole_reply(florent_with, alice, model):
    app = florent_with(llm_read_timeout=0.3)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Lingering")
    model.linger_after_done = 5

    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert response.status_code == 201
    assert response.get_json()["messages"][1]["content"] == "Hello, I am Florent."


def test_a_reply_ends_at_done_however_long_the_model_lingers_after_it(florent, chat, alice, model):
    """[DONE] ends the reply; the body's end, which a server may send late, is not waited
    for (here the model lingers 10 s, within the read timeout)."""
    conversation = create_conversation(chat, alice, title="Lingering longer")
    model.linger_after_done = 10
    started = time.monotonic()

    _, events = stream_turn(chat, alice, conversation["_id"], "hi")

    assert [name for name, _ in events][-1] == "done"
    assert time.monotonic() - started < 5
    assert stored(florent, conversation["_id"])[1][-1] == ("assistant", "Hello, I am Florent.")
    assert_the_next_turn_comes_on_a_new_connection(chat, alice, conversation["_id"], model)


def assert_the_next_turn_comes_on_a_new_connection(client, alice, conversation_id, model):
    """urllib3 closed the connection whose body's end was given up on, and opened another
    for the next turn: a half-read one never went back into use."""
    model.linger_after_done = model.chatter_after_done = 0
    again = client.post(messages_url(conversation_id), json={"content": "again"}, headers=alice)
    assert again.status_code == 201
    assert model.requests[-1]["client"] != model.requests[-2]["client"]


def test_a_reply_stopped_before_its_first_word_in_a_conversation_deleted_meanwhile_is_not_found(
    florent, chat, alice, model
):
    """As a reply whose conversation is deleted before it is stored: `not_found`, never a
    `stopped` event naming no conversation. The test deletes the conversation in a
    transaction it holds open while the reply is stopped, so the slot is freed after."""
    conversation = create_conversation(chat, alice, title="Going")
    model.stall_after = 0  # silent before its first word
    _, events = stream_turn(chat, alice, conversation["_id"], "hi")
    assert next(events)[0] == "message"
    with florent.app_context(), db.engine.connect() as deleting:
        deleting.execute(delete(Conversation).where(Conversation.id == conversation["_id"]))
        stop = chat.post(f"{URL}/{conversation['_id']}/stop", headers=alice)
        assert stop.status_code == 202
        deleting.commit()
    assert list(events) == [("error", {"error": "not_found"})]


def test_a_reply_ends_soon_after_done_however_long_the_model_chatters_after_it(
    app, florent_with, alice, model
):
    """A body's end is waited for a second in all, not a second between its bytes: a
    server that keeps sending comments after [DONE] is hung up on."""
    client = florent_with(llm_turn_timeout=10).test_client()
    conversation = create_conversation(client, alice, title="Chatty")
    model.chatter_after_done = 10
    started = time.monotonic()

    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert response.status_code == 201
    assert time.monotonic() - started < 5
    assert_the_next_turn_comes_on_a_new_connection(client, alice, conversation["_id"], model)


def test_a_turn_whose_slot_is_freed_between_its_statements_is_taken(florent, chat, alice, model):
    """Its store found the conversation's reply slot held; by the check that tells why,
    the slot was free. The turn is stored then, not refused with an error no condition
    gave (it was `too_many_replies`, the first of them)."""
    conversation = create_conversation(chat, alice, title="Freed meanwhile")
    hold = "UPDATE conversations SET reply_started_at = {} WHERE id = :id"
    with florent.app_context():
        engine = db.engine
    check = str(STORE_TURN.check.compile(dialect=engine.dialect))  # tells why a store failed
    with engine.begin() as holder:  # a live turn's slot
        holder.execute(text(hold.format("now()")), {"id": conversation["_id"]})
    freed = []

    def free_before_the_check(conn, cursor, statement, parameters, context, executemany):
        if not freed and statement == check:
            freed.append(statement)
            with engine.begin() as other:
                other.execute(text(hold.format("NULL")), {"id": conversation["_id"]})

    event.listen(engine, "before_cursor_execute", free_before_the_check)
    try:
        response = chat.post(
            messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice
        )
    finally:
        event.remove(engine, "before_cursor_execute", free_before_the_check)
    assert freed, "the check never ran: the store was not refused"
    assert response.status_code == 201, response.get_json()


def test_a_reply_that_takes_longer_than_the_turn_timeout_is_abandoned(florent_with, alice, model):
    app = florent_with(llm_turn_timeout=0.5)
    client = app.test_client()
    conversation = create_conversation(client, alice, title="Chatty")
    model.reply, model.delay = ["word "] * 80, 0.05  # 4 s of reply, one chunk every 50 ms

    started = time.monotonic()
    response = client.post(messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice)

    assert response.status_code == 502
    assert time.monotonic() - started < 3
    assert_only_the_person_message(app, conversation["_id"], "hi")


def test_a_client_that_disconnects_mid_stream_leaves_no_reply(
    florent, florent_server, chat, alice, model
):
    conversation = create_conversation(chat, alice, title="Gone")
    model.reply, model.delay = ["word "] * 100, 0.02  # 2 s of reply

    response = requests.post(
        f"{florent_server}{messages_url(conversation['_id'])}",
        json={"content": "hi"},
        headers={**alice, **STREAM},
        stream=True,
        timeout=10,
    )
    assert response.status_code == 201
    lines = response.iter_lines()
    assert next(line for line in lines if line.startswith(b"event: delta"))
    response.close()  # the person closed the tab

    # Florent hangs up on the model at its next write, and frees the conversation.
    assert model.hung_up.wait(5)
    assert wait_until(lambda: stored(florent, conversation["_id"])[0].reply_started_at is None)
    assert_only_the_person_message(florent, conversation["_id"], "hi")
    model.reply, model.delay = ["Back."], 0
    again = chat.post(messages_url(conversation["_id"]), json={"content": "again"}, headers=alice)
    assert again.status_code == 201


def test_a_stream_the_server_never_started_frees_the_conversation(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Never read")

    response, _ = stream_turn(chat, alice, conversation["_id"], "hi")
    response.close()  # closed before a single event was read

    assert_only_the_person_message(florent, conversation["_id"], "hi")
    assert model.requests == []


def test_a_conversation_deleted_during_the_reply_gets_no_reply(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Deleted")

    _, events = stream_turn(chat, alice, conversation["_id"], "hi")
    assert next(events)[0] == "message"
    assert chat.delete(f"{URL}/{conversation['_id']}", headers=alice).status_code == 204

    assert list(events)[-1] == ("error", {"error": "not_found"})
    with florent.app_context():
        assert db.session.scalar(select(Message.id)) is None


@pytest.mark.parametrize("accept", [{}, STREAM])
def test_no_database_connection_is_held_while_the_model_talks(
    florent, florent_server, chat, alice, model, accept
):
    conversation = create_conversation(chat, alice, title="Pool")
    model.stall_after = 1
    with florent.app_context():
        pool = db.engine.pool

    with ThreadPoolExecutor(max_workers=1) as pool_of_one:
        turn = pool_of_one.submit(
            requests.post,
            f"{florent_server}{messages_url(conversation['_id'])}",
            json={"content": "hi"},
            headers={**alice, **accept},
            timeout=20,
        )
        assert model.received.wait(10)
        time.sleep(0.1)  # well into the reply
        assert pool.checkedout() == 0
        model.release.set()
        assert turn.result().status_code == 201
    assert stored(florent, conversation["_id"])[0].message_count == 2


# -- One turn at a time -------------------------------------------------------------


def test_a_second_message_while_florent_replies_is_409_and_not_stored(
    florent, chat, alice, bob, model
):
    conversation = create_conversation(chat, alice, title="Busy")
    conversation_id = conversation["_id"]
    _, events = stream_turn(chat, alice, conversation_id, "first")
    assert [next(events)[0], next(events)[0]] == ["message", "delta"]  # replying now

    for headers in (alice, {**alice, **STREAM}):
        second = chat.post(
            messages_url(conversation_id), json={"content": "second"}, headers=headers
        )
        assert second.status_code == 409
        assert second.get_json() == {"error": "reply_in_progress"}
    # Someone else still cannot tell the conversation exists.
    intruder = chat.post(messages_url(conversation_id), json={"content": "x"}, headers=bob)
    assert (intruder.status_code, intruder.get_json()) == (404, {"error": "not_found"})
    row, messages = stored(florent, conversation_id)
    assert (row.message_count, messages) == (1, [("user", "first")])

    assert list(events)[-1][0] == "done"
    third = chat.post(messages_url(conversation_id), json={"content": "third"}, headers=alice)
    assert third.status_code == 201
    assert third.get_json()["conversation"]["messageCount"] == 4


def test_concurrent_messages_make_one_turn_and_409s(florent, florent_server, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Race")
    url = f"{florent_server}{messages_url(conversation['_id'])}"
    model.stall_after = 1  # the winning turn stays open until released

    def send(i: int) -> int:
        return requests.post(url, json={"content": f"m{i}"}, headers=alice, timeout=20).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(send, i) for i in range(8)]
        # Seven are turned away while the eighth is still waiting for its reply.
        assert wait_until(lambda: sum(f.done() for f in futures) == 7, timeout=10)
        model.release.set()
        statuses = sorted(f.result() for f in futures)

    assert statuses == [201] + [409] * 7
    row, messages = stored(florent, conversation["_id"])
    assert row.message_count == 2 and [role for role, _ in messages] == ["user", "assistant"]
    assert len(model.requests) == 1


def test_a_turn_that_died_does_not_block_the_conversation_forever(florent, chat, alice, model):
    conversation = create_conversation(chat, alice, title="Stale")
    stale_after = florent.extensions["florent.assistant"].limits.stale_after

    def claimed(ago: timedelta) -> int:
        with florent.app_context():
            db.session.execute(
                text("UPDATE conversations SET reply_started_at = now() - :ago WHERE id = :id"),
                {"ago": ago, "id": conversation["_id"]},
            )
            db.session.commit()
        return chat.post(
            messages_url(conversation["_id"]), json={"content": "hi"}, headers=alice
        ).status_code

    assert claimed(stale_after - timedelta(seconds=5)) == 409
    assert claimed(stale_after + timedelta(seconds=5)) == 201


# -- Auto-title -----------------------------------------------------------------


def test_the_first_message_titles_an_untitled_conversation(chat, alice, model):
    conversation = create_conversation(chat, alice)
    assert conversation["title"] == "New conversation"

    _, events = stream_turn(
        chat, alice, conversation["_id"], "\n  Plan the Q3 launch \t\nwith the details"
    )
    events = list(events)

    assert events[0][1]["conversation"]["title"] == "Plan the Q3 launch"
    assert events[-1][1]["conversation"]["title"] == "Plan the Q3 launch"
    chat.post(messages_url(conversation["_id"]), json={"content": "Other topic"}, headers=alice)
    detail = chat.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()
    assert detail["conversation"]["title"] == "Plan the Q3 launch"


def test_a_long_first_line_gives_a_title_of_120_code_points(chat, alice, model):
    conversation = create_conversation(chat, alice)
    body = chat.post(
        messages_url(conversation["_id"]), json={"content": "é" * 119 + " 🙂🙂🙂"}, headers=alice
    ).get_json()
    assert body["conversation"]["title"] == "é" * 119


def test_the_title_is_given_even_when_the_reply_fails(chat, alice, model):
    conversation = create_conversation(chat, alice)
    model.status = 503
    response = chat.post(
        messages_url(conversation["_id"]), json={"content": "Budget"}, headers=alice
    )
    assert response.status_code == 502
    detail = chat.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()
    assert detail["conversation"]["title"] == "Budget"


@pytest.mark.parametrize("title", ["Quarterly plan", "New conversation"])
def test_a_title_the_person_set_is_never_overwritten(chat, alice, model, title):
    conversation = create_conversation(chat, alice, title="Draft")
    chat.patch(f"{URL}/{conversation['_id']}", json={"title": title}, headers=alice)

    body = chat.post(
        messages_url(conversation["_id"]), json={"content": "Hello"}, headers=alice
    ).get_json()

    assert body["conversation"]["title"] == title


# -- Isolation ------------------------------------------------------------------


@pytest.mark.parametrize("other", ["bob", "alice_elsewhere", "robot"])
def test_another_callers_conversation_is_404_and_the_model_is_not_asked(
    florent, chat, alice, model, other, request
):
    conversation = create_conversation(chat, alice, title="Mine")
    intruder = request.getfixturevalue(other)

    for headers in (intruder, {**intruder, **STREAM}):
        response = chat.post(
            messages_url(conversation["_id"]), json={"content": "pwned"}, headers=headers
        )
        assert (response.status_code, response.get_json()) == (404, {"error": "not_found"})

    assert model.requests == []
    row, messages = stored(florent, conversation["_id"])
    assert (row.message_count, row.title, messages) == (0, "Mine", [])


# -- Coalescing ---------------------------------------------------------------------


@pytest.mark.parametrize(("window_ms", "deltas"), [(0, 6), (2000, 1)])
def test_pieces_within_the_coalescing_window_are_sent_as_one_delta(
    app, florent_with, alice, model, window_ms, deltas
):
    client = florent_with(stream_coalesce_ms=window_ms).test_client()
    conversation = create_conversation(client, alice, title="Coalesced")
    model.reply, model.delay = ["Un", " deux", " trois", " quatre", " cinq", " six"], 0.01

    _, events = stream_turn(client, alice, conversation["_id"], "Compte")
    events = list(events)

    sent = [data["text"] for name, data in events if name == "delta"]
    assert len(sent) == deltas
    assert "".join(sent) == "Un deux trois quatre cinq six"
    assert events[-1][1]["message"]["content"] == "Un deux trois quatre cinq six"
