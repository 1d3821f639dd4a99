"""A caller's search while other people's messages hold the same word: p50 and p99 of
the statement `GET /api/florent/conversations?q=` runs (the use case itself, through
the app's engine), at 1,000 and at 1,000,000 messages of other people, and its plan
(EXPLAIN ANALYZE, the statement exactly as sent). Prints figures only.

.venv/bin/python bench/search.py [OTHERS ...]     (default: 1000 1000000)
"""

from __future__ import annotations

import statistics
import sys
import time

import psycopg
from embedded_app import embedded_app
from sqlalchemy import event

from florent.auth import Caller
from florent.conversations import search
from florent.extensions import db

CALLER = Caller("org_bench", "user_bench")
CONVERSATIONS, MESSAGES_EACH = 200, 25
RUNS = 300
# The caller: 200 conversations of 25 messages (5,000); one message in 20 names Zürich,
# and one title in 10; every message mentions trains.
LOAD_CALLER = (
    """
    INSERT INTO conversations (org_id, id, user_id, title, model, message_count,
                               created_at, updated_at)
    SELECT %(org)s, lpad(to_hex(c), 24, '0'), %(user)s,
           CASE WHEN c %% 10 = 0 THEN 'Zürich in spring ' ELSE 'Plans ' END || c, 'm',
           %(each)s, now() - make_interval(secs => c), now() - make_interval(secs => c)
    FROM generate_series(1, %(conversations)s) AS c""",
    """
    INSERT INTO messages (org_id, id, conversation_id, user_id, role, content, created_at)
    SELECT %(org)s, 'a' || lpad(to_hex(c * 1000 + m), 23, '0'), lpad(to_hex(c), 24, '0'),
           %(user)s, 'user',
           'We talked about the trip, the trains and the hotels, message ' || m || '. '
           || CASE WHEN m %% 20 = 0 THEN 'Then the old town of Zürich by the lake. ' ELSE '' END
           || repeat('More words about other things entirely. ', 3),
           now() - make_interval(secs => c) + make_interval(secs => m)
    FROM generate_series(1, %(conversations)s) AS c, generate_series(1, %(each)s) AS m""",
)
# Other people's messages, every one naming Zürich, the lake and trains: half in the
# caller's organization (a thousand other people), half in a hundred other
# organizations; fifty a conversation.
LOAD_OTHERS = (
    """
    INSERT INTO conversations (org_id, id, user_id, title, model, message_count)
    SELECT CASE WHEN c %% 2 = 0 THEN %(org)s ELSE 'org_' || (c %% 100) END,
           'b' || lpad(to_hex(c), 23, '0'), 'user_' || (c %% 1000), 'Zürich ' || c, 'm', 50
    FROM generate_series(%(first)s / 50, %(last)s / 50 - 1) AS c""",
    """
    INSERT INTO messages (org_id, id, conversation_id, user_id, role, content)
    SELECT CASE WHEN n / 50 %% 2 = 0 THEN %(org)s ELSE 'org_' || (n / 50 %% 100) END,
           'c' || lpad(to_hex(n), 23, '0'), 'b' || lpad(to_hex(n / 50), 23, '0'),
           'user_' || (n / 50 %% 1000), 'user',
           'Zürich again, the lake, the trains and the old town, note ' || n
    FROM generate_series(%(first)s, %(last)s - 1) AS n""",
)
SLICE = 100_000  # other people's messages loaded a statement at a time
QUERIES = {
    "one word": "zurich",
    "two words": "Zürich lake",
    "no match": "zurich nowhere",
    "every message": "trains",
}


def timed(app, q: str) -> list[float]:
    times = []
    with app.app_context():
        for _ in range(RUNS):
            started = time.perf_counter()
            search.search_conversations(CALLER, q, limit=30, after=None)
            times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def explain(app, q: str) -> str:
    """EXPLAIN ANALYZE of the statement exactly as the use case sends it."""
    sent = []

    def record(conn, cursor, sql, params, *_) -> None:
        sent.append((sql, params))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            search.search_conversations(CALLER, q, limit=30, after=None)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        ((sql, params),) = sent
        with db.engine.connect() as connection:
            rows = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            return "\n".join(row[0] for row in rows)


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [1_000, 1_000_000]
    with embedded_app("search") as (app, url), psycopg.connect(url, autocommit=True) as loader:
        loader.execute("SET statement_timeout = 0")
        caller = {"org": CALLER.org_id, "user": CALLER.user_id}
        for statement in LOAD_CALLER:
            loader.execute(
                statement, {**caller, "conversations": CONVERSATIONS, "each": MESSAGES_EACH}
            )
        loaded = 0
        for size in sizes:
            started = time.perf_counter()
            for first in range(loaded, size, SLICE):
                last = min(size, first + SLICE)
                for statement in LOAD_OTHERS:
                    loader.execute(statement, {"org": CALLER.org_id, "first": first, "last": last})
            loader.execute("VACUUM ANALYZE")
            loaded = size
            print(
                f"\n== {size:,} messages of other people naming Zürich (loaded in "
                f"{time.perf_counter() - started:.0f} s); the caller has {CONVERSATIONS} "
                f"conversations of {MESSAGES_EACH} messages, {RUNS} searches each"
            )
            for name, q in QUERIES.items():
                times = timed(app, q)
                p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
                print(f"q={q!r:18} ({name:13}) p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
            print(f"\nEXPLAIN (ANALYZE, BUFFERS), q={QUERIES['one word']!r}:")
            print(explain(app, QUERIES["one word"]))


if __name__ == "__main__":
    main()
