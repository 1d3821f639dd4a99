"""The pieces of a turn that need no server: the prompt, the SSE reading, the title,
and the settings of the model server."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from florent.assistant.model_server import ModelServer
from florent.assistant.prompt import (
    build_prompt,
    starting_with_the_person,
    system_message,
    title_from_message,
)
from florent.assistant.turns import Limits
from florent.assistant.wire import BadStream, chunk_parts, sse_data, sse_lines
from florent.config import ConfigError, read_settings

NOW = datetime(2026, 11, 27, 4, 40, 14, tzinfo=UTC)


def message(role: str, content: str) -> SimpleNamespace:
    return SimpleNamespace(role=role, content=content)


# -- The system message ---------------------------------------------------------


def test_the_system_message_introduces_florent_and_the_person_at_their_local_time():
    system = system_message("Alice Martin", "Europe/Paris", NOW)
    assert system.startswith(
        "You are Florent, the builder-chat assistant of the RakerOne platform."
    )
    assert "You are talking with Alice Martin." in system
    assert "Their local time is Friday 27 November 2026, 05:40 (Europe/Paris, UTC+01:00)." in system


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/St_Johns", "Friday 27 November 2026, 01:10 (America/St_Johns, UTC-03:30)"),
        ("Asia/Kathmandu", "Friday 27 November 2026, 10:25 (Asia/Kathmandu, UTC+05:45)"),
        ("Pacific/Kiritimati", "Friday 27 November 2026, 18:40 (Pacific/Kiritimati, UTC+14:00)"),
        ("UTC", "Friday 27 November 2026, 04:40 (UTC, UTC+00:00)"),
    ],
)
def test_local_time_follows_the_zone_offset(zone, expected):
    assert expected in system_message(None, zone, NOW)


@pytest.mark.parametrize(
    "zone",
    [None, "", "Mars/Olympus", "Europe", "../../etc/passwd", "/etc/localtime", "Europe/Paris\n"],
)
def test_an_unknown_zone_gives_utc_and_says_so(zone):
    system = system_message(None, zone, NOW)
    assert "Their time zone is not known; it is now Friday 27 November 2026, 04:40 UTC." in system


@pytest.mark.parametrize("display", [None, "", "   "])
def test_without_a_display_name_no_name_is_given(display):
    assert "talking with" not in system_message(display, "UTC", NOW).split("\n", 1)[1]


def test_the_prompt_is_the_system_message_then_the_history_oldest_first():
    conversation = SimpleNamespace(user_display="Bob", timezone="Europe/Paris")
    history = [message("user", "one"), message("assistant", "two"), message("user", "three")]

    prompt = build_prompt(conversation, history, now=NOW)

    assert prompt[0] == {"role": "system", "content": system_message("Bob", "Europe/Paris", NOW)}
    assert prompt[1:] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]


# -- The history sent ------------------------------------------------------------------


def contents(messages) -> list[str]:
    return [m.content for m in messages]


@pytest.mark.parametrize(
    ("roles", "kept"),
    [
        ("user assistant user", "user assistant user"),
        ("assistant user assistant user", "user assistant user"),
        ("assistant assistant user", "user"),
        ("assistant", "assistant"),  # never an empty history
    ],
)
def test_the_history_starts_with_the_person(roles, kept):
    history = [message(role, str(n)) for n, role in enumerate(roles.split())]
    assert " ".join(m.role for m in starting_with_the_person(history)) == kept


# -- Reading server-sent events -----------------------------------------------------


def test_sse_data_joins_data_lines_and_skips_comments_and_other_fields():
    lines = [
        ": keep-alive",
        "",
        "event: chunk",
        "id: 7",
        "data: {",
        'data:"a": 1}',
        "",
        "retry: 100",
        "",
        "data: [DONE]",
    ]
    assert list(sse_data(lines, 100)) == ['{\n"a": 1}', "[DONE]"]


def test_sse_lines_and_events_longer_than_the_longest_are_refused():
    assert list(sse_lines([b"data: ab", b"c\n\n"], 10)) == ["data: abc", ""]
    with pytest.raises(BadStream):
        list(sse_lines([b"data: ab", b"cdefgh"], 10))  # a line not ended within 10 bytes
    assert list(sse_data(["data: 12345", "data: 678", ""], 10)) == ["12345\n678"]
    with pytest.raises(BadStream):
        list(sse_data(["data: 12345", "data: 6789", ""], 10))  # 11 with its newline


def test_stream_reply_rejects_what_is_not_a_chunk():
    with pytest.raises(BadStream):
        list(chunk_parts("not json"))
    with pytest.raises(BadStream):
        list(chunk_parts("[1, 2]"))
    with pytest.raises(BadStream):
        list(chunk_parts('{"error": {"message": "overloaded"}}'))
    assert list(chunk_parts('{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}')) == [
        ("", None)
    ]
    assert list(
        chunk_parts(
            '{"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}'
        )
    ) == [("hi", "stop")]


# -- The title ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("Plan the launch", "Plan the launch"),
        ("  Plan the launch  \nand more", "Plan the launch"),
        ("\n\n \t\n  Second line first\n", "Second line first"),
        ("x" * 130, "x" * 120),
        ("x" * 119 + " yz", "x" * 119),  # no trailing space after the cut
        ("🙂" * 121, "🙂" * 120),
        ("   ", None),
        ("\n\t\n", None),
    ],
)
def test_a_title_is_the_first_non_blank_line_trimmed_to_120_code_points(content, title):
    assert title_from_message(content, 120) == title


# -- Settings -----------------------------------------------------------------------


def test_without_a_base_url_florent_makes_no_replies():
    settings = read_settings({})
    assert settings.llm_base_url is None and settings.llm_api_key is None
    assert ModelServer.from_settings(settings) is None


def test_model_server_settings_come_from_the_environment():
    settings = read_settings(
        {
            "FLORENT_LLM_BASE_URL": "http://127.0.0.1:8080/v1/",
            "FLORENT_LLM_API_KEY": "sk-1",
            "FLORENT_LLM_CONNECT_TIMEOUT": "1.5",
            "FLORENT_LLM_READ_TIMEOUT": "20",
            "FLORENT_LLM_TURN_TIMEOUT": "90",
            "FLORENT_LLM_HISTORY_CHARS": "1000",
        }
    )
    assert (settings.llm_base_url, settings.llm_api_key) == ("http://127.0.0.1:8080/v1/", "sk-1")
    assert (settings.llm_connect_timeout, settings.llm_read_timeout) == (1.5, 20.0)
    assert (settings.llm_turn_timeout, settings.llm_history_chars) == (90.0, 1000)
    server = ModelServer.from_settings(settings)
    try:
        assert server.url == "http://127.0.0.1:8080/v1/chat/completions"
        # A turn's slot outlasts the longest live turn.
        assert Limits.from_settings(settings).stale_after.total_seconds() > 90 + 20 + 1.5
    finally:
        server.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLORENT_LLM_BASE_URL", "file:///etc/passwd"),
        ("FLORENT_LLM_BASE_URL", "localhost:8080"),
        ("FLORENT_LLM_READ_TIMEOUT", "soon"),
        ("FLORENT_LLM_READ_TIMEOUT", "0"),
        ("FLORENT_LLM_TURN_TIMEOUT", "-1"),
        ("FLORENT_LLM_CONNECT_TIMEOUT", "nan"),
        ("FLORENT_LLM_HISTORY_CHARS", "1.5"),
    ],
)
def test_bad_model_server_settings_are_refused_by_name(name, value):
    with pytest.raises(ConfigError, match=name):
        read_settings({"FLORENT_LLM_BASE_URL": "http://127.0.0.1/v1", name: value})
