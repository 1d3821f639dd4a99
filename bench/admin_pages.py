"""Admin page times at 1M conversations, 1M messages and 1M audit events (and one
conversation of 10,000 messages). Prints figures only.

.venv/bin/python bench/admin_pages.py [ROWS]     (make bench runs it)
"""

from __future__ import annotations

import re
import statistics
import sys
import time

import psycopg
from embedded_app import embedded_app
from sqlalchemy import text

from florent.audit import Actor
from florent.extensions import db
from florent.staff import accounts

# Updated in another order than created (a stride through the rows), as people come
# back to old conversations.
LOAD_CONVERSATIONS = """
    INSERT INTO conversations (id, org_id, user_id, title, model, message_count,
                               last_message_at, created_at, updated_at)
    SELECT to_hex(1700000000 + i) || lpad(to_hex(i), 16, '0'), 'org_' || (i %% 1000),
           'user_' || (i %% 50000), 'Conversation ' || i::text, 'm', 1, now(),
           now() - make_interval(secs => %(n)s - i),
           now() - make_interval(secs => (i::bigint * 7919) %% %(n)s)
    FROM generate_series(1, %(n)s) i"""
LOAD_MESSAGES = """
    INSERT INTO messages (org_id, id, conversation_id, role, content, created_at)
    SELECT 'org_' || (i %% 1000), to_hex(1700000000 + i) || lpad(to_hex(i), 16, 'f'),
           to_hex(1700000000 + i) || lpad(to_hex(i), 16, '0'), 'user', repeat('word ', 40) || i, now()
    FROM generate_series(1, %(n)s) i"""
# A trail of a thousand organizations' events: mostly requests made while acting for
# people, some keys issued, a rare action, spread over the last year.
LOAD_AUDIT = """
    INSERT INTO audit_events (org_id, id, occurred_at, actor_kind, actor_id, acting_for,
                              action, target, request_id, client_address)
    SELECT 'org_' || (i %% 1000), to_hex(1700000000 + i) || lpad(to_hex(i), 16, '0'),
           now() - make_interval(secs => %(n)s - i) * 30,
           'api_key', 'key_' || (i %% 3000), 'user_' || (i %% 50000),
           CASE WHEN i %% 100000 = 0 THEN 'person.erased'
                WHEN i %% 10 = 0 THEN 'api_key.issued'
                ELSE 'api.get_conversation' END,
           to_hex(i), 'req_' || i, '10.0.0.1'
    FROM generate_series(1, %(n)s) i"""
# One conversation as long as a conversation may be, for its pages of messages.
LONG_CONVERSATION = 10_000
LOAD_LONG_CONVERSATION = """
    INSERT INTO messages (org_id, id, conversation_id, role, content, created_at)
    SELECT (SELECT org_id FROM conversations WHERE id = %(conversation)s),
           'ab' || lpad(to_hex(i), 22, '0'), %(conversation)s, 'user',
           repeat('word ', 40) || i, now() + make_interval(secs => i)
    FROM generate_series(1, %(n)s) i"""


def audit_filter(app, name: str, operation: str = "equals", *, position: int = 0) -> str:
    """The query argument of one of the audit view's filters, as Flask-Admin names it."""
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "audit")
    for index, found in enumerate(view._filters):
        if str(found.name) == name and str(found.operation()) == operation:
            return f"flt{position}_{index}"
    raise LookupError((name, operation))


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with embedded_app("admin") as (app, url):
        measure(app, url, rows)


def measure(app, url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as loader:
        loader.execute("SET statement_timeout = 0")
        started = time.perf_counter()
        loader.execute(LOAD_CONVERSATIONS, {"n": rows})
        loader.execute(LOAD_MESSAGES, {"n": rows})
        loader.execute(LOAD_AUDIT, {"n": rows})
        loader.execute("ANALYZE")
        print(
            f"loaded {rows:,} conversations, messages and audit events"
            f" in {time.perf_counter() - started:.1f} s"
        )
    with app.app_context():
        accounts.create_staff(
            "bench@florent.test",
            role="admin",
            password="bench password 123",
            by=Actor("operator", "bench"),
        )
        org_id, conversation_id = db.session.execute(
            text("SELECT org_id, id FROM conversations ORDER BY id DESC LIMIT 1 OFFSET 500")
        ).one()
    with psycopg.connect(url, autocommit=True) as loader:
        loader.execute(
            LOAD_LONG_CONVERSATION, {"conversation": conversation_id, "n": LONG_CONVERSATION}
        )
        loader.execute(
            "UPDATE conversations SET message_count = message_count + %(n)s"
            " WHERE id = %(conversation)s",
            {"conversation": conversation_id, "n": LONG_CONVERSATION},
        )
        loader.execute("ANALYZE messages")
    middle = f"ab{LONG_CONVERSATION // 2:022x}"
    week_ago = time.strftime("%Y-%m-%d+%H:%M:%S", time.gmtime(time.time() - 7 * 86400))

    client = app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1)
    credentials = {
        "email": "bench@florent.test",
        "password": "bench password 123",
        "csrf_token": csrf,
    }
    assert client.post("/admin/login", data=credentials).status_code == 302

    pages = {
        "index (counts)": "/admin/",
        "conversations, page 1": "/admin/conversations/",
        "conversations, page 40": "/admin/conversations/?page=39",
        "conversations, sort by created": "/admin/conversations/?sort=6",
        "conversations, least recently updated": "/admin/conversations/?sort=7",
        "conversations, search (common)": "/admin/conversations/?search=Conversation",
        "conversations, search (no match)": f"/admin/conversations/?search=Conversation%20{rows // 2}x",
        "conversation details (10,000 messages)": f"/admin/conversations/details/?id={org_id},{conversation_id}",
        "  messages after the 5,000th": f"/admin/conversations/details/?id={org_id},{conversation_id}&after={middle}",
        "  messages before the 5,000th": f"/admin/conversations/details/?id={org_id},{conversation_id}&before={middle}",
        "  latest messages": f"/admin/conversations/details/?id={org_id},{conversation_id}&latest=1",
        "messages, page 1": "/admin/messages/",
        "api keys": "/admin/api-keys/",
        "audit trail, page 1": "/admin/audit/",
        "audit trail, page 40": "/admin/audit/?page=39",
        "  of an organization": f"/admin/audit/?{audit_filter(app, 'Organization')}=org_7",
        "  by an actor": f"/admin/audit/?{audit_filter(app, 'Actor')}=key_7",
        "  of a rare action": f"/admin/audit/?{audit_filter(app, 'Action')}=person.erased",
        "  acting for a person": f"/admin/audit/?{audit_filter(app, 'Acting for')}=user_7",
        "  since a week ago": f"/admin/audit/?{audit_filter(app, 'Time', 'greater than')}="
        + f"{week_ago}",
        "  of an organization, since a week ago": f"/admin/audit/?"
        f"{audit_filter(app, 'Organization')}=org_7&"
        f"{audit_filter(app, 'Time', 'greater than', position=1)}={week_ago}",
    }
    for name, url in pages.items():
        times, refused = [], []
        for _ in range(5):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert b"Invalid Filter" not in response.data, url
            if response.status_code != 200:  # e.g. 503: the statement timeout cut it short
                refused.append(response.status_code)
        failed = f"   {len(refused)} of 5 answered {sorted(set(refused))}" if refused else ""
        print(
            f"{name:40s} median {statistics.median(times):8.1f} ms"
            f"   max {max(times):8.1f} ms{failed}"
        )


if __name__ == "__main__":
    main()
