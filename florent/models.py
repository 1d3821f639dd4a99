"""The stored domain, as typed SQLAlchemy 2 models (one module, so Alembic sees them all)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .ids import new_object_id

# Times are kept at the millisecond precision the API shows, so what a client reads
# back is exactly what is stored (and what a cursor compares against).
NOW_MS = text("date_trunc('milliseconds', now())")
OBJECT_ID_CHECK = "id ~ '^[0-9a-f]{24}$'"
# Every plaintext API key starts with this, so secret scanners and people can spot one.
API_KEY_SCHEME = "flk_"
# The user id an API key acts as; a session token's `sub` may never start with it.
API_KEY_IDENTITY_PREFIX = "apikey_"
STAFF_ROLES = ("viewer", "admin")
READ, WRITE = "conversations:read", "conversations:write"
PERMISSIONS = (READ, WRITE)
ALL_PERMISSIONS = text(f"ARRAY{list(PERMISSIONS)}::varchar[]")


def timestamp(**kwargs) -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), **kwargs)


def search_vector(column: str) -> Mapped[str]:
    """What search matches in `column` (migration 0010: any language, accents ignored),
    as PostgreSQL spells the expression back. Deferred: loading a model never reads it."""
    expression = f"to_tsvector('florent_search'::regconfig, florent_search_text({column}))"
    return mapped_column(TSVECTOR, Computed(expression, persisted=True), deferred=True)


def of_a_conversation() -> ForeignKeyConstraint:
    """A row that belongs to a conversation, by (org_id, conversation_id): it goes when the
    conversation goes."""
    return ForeignKeyConstraint(
        ["org_id", "conversation_id"],
        ["conversations.org_id", "conversations.id"],
        ondelete="CASCADE",
    )


class Conversation(db.Model):
    __tablename__ = "conversations"

    # The organization leads every key of a person's data: the column a distributed
    # PostgreSQL (Citus) shards by, so a conversation and its rows live together.
    org_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    user_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(120))
    model: Mapped[str] = mapped_column(String(100))
    user_display: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(100))
    message_count: Mapped[int] = mapped_column(server_default=text("0"))
    last_message_at: Mapped[datetime | None] = timestamp()
    created_at: Mapped[datetime] = timestamp(server_default=NOW_MS)
    updated_at: Mapped[datetime] = timestamp(server_default=NOW_MS)
    # Set while Florent is generating a reply: one turn at a time per conversation. A turn
    # that died without clearing it (a killed worker) stops counting once it is stale.
    reply_started_at: Mapped[datetime | None] = timestamp()
    # The API key that took the reply slot (None: the person did), whoever it acted for.
    reply_key_id: Mapped[str | None] = mapped_column(String(24))
    # The title's words, checked on the caller's conversations as a search walks them.
    search: Mapped[str] = search_vector("(title)::text")

    __table_args__ = (
        CheckConstraint(OBJECT_ID_CHECK, name="id_is_object_id"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 120", name="title_length"),
        CheckConstraint("message_count >= 0", name="message_count_not_negative"),
        # "This caller's conversations, most recently updated first", keyset-paginated,
        # in an order of their own (NULLS LAST: conversations/service.py, NEWEST_FIRST).
        Index(
            "ix_conversations_owner_recent",
            "org_id",
            "user_id",
            text("updated_at DESC NULLS LAST"),
            text("id DESC NULLS LAST"),
        ),
        # Everyone's conversations, most recently updated first (the admin's list), and by
        # id, which starts with the creation second (the admin's sort by creation).
        Index("ix_conversations_recent", text("updated_at DESC"), text("id DESC")),
        Index("ix_conversations_id", "id"),
        # A caller's replies in progress, a person's or a key's, counted before each turn.
        Index(
            "ix_conversations_owner_replying",
            "org_id",
            "user_id",
            postgresql_where=text("reply_started_at IS NOT NULL"),
        ),
        Index(
            "ix_conversations_key_replying",
            "org_id",
            "reply_key_id",
            postgresql_where=text("reply_key_id IS NOT NULL"),
        ),
    )


class Message(db.Model):
    __tablename__ = "messages"

    org_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    conversation_id: Mapped[str] = mapped_column(String(24))
    # The conversation's owner, copied as the message is stored (a trigger fills it in for
    # a writer that leaves it out), so a search finds one person's messages by index.
    user_id: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # Kept beside the content so that summing the history's length never reads (and
    # decompresses) the contents themselves.
    content_chars: Mapped[int] = mapped_column(Computed("char_length(content)", persisted=True))
    # `stopped`: a reply of Florent's that the person stopped; what was generated so far.
    status: Mapped[str] = mapped_column(String(16), server_default=text("'complete'"))
    created_at: Mapped[datetime] = timestamp(server_default=NOW_MS)
    search: Mapped[str] = search_vector("content")

    __table_args__ = (
        CheckConstraint(OBJECT_ID_CHECK, name="id_is_object_id"),
        CheckConstraint("role IN ('user', 'assistant')", name="role_known"),
        CheckConstraint("status IN ('complete', 'stopped')", name="status_known"),
        of_a_conversation(),
        # A conversation's messages in order, walked from either end; serves the cascade.
        Index("ix_messages_conversation_order", "org_id", "conversation_id", "created_at", "id"),
        # Everyone's messages by id, so by creation (the admin's list).
        Index("ix_messages_id", "id"),
        # A person's messages holding some words: the posting lists of the owner and of
        # each word are intersected in the index, so other people's messages are skipped.
        # No pending list (migration 0010): a search never reads everyone's recent writes.
        Index(
            "ix_messages_search",
            "org_id",
            "user_id",
            "search",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
    )


class SocketTicket(db.Model):
    """A single-use ticket that opens one conversation's WebSocket (a browser cannot put
    a bearer token on the upgrade). Only a SHA-256 of it is stored; using it deletes it."""

    __tablename__ = "socket_tickets"

    org_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    ticket_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    conversation_id: Mapped[str] = mapped_column(String(24))
    expires_at: Mapped[datetime] = timestamp()
    # The key that minted it while acting for the person `user_id` (X-Act-As-User).
    acting_key_id: Mapped[str | None] = mapped_column(String(24))
    # When the session token that minted it stops being accepted (Caller.valid_until).
    caller_valid_until: Mapped[datetime | None] = timestamp()

    __table_args__ = (
        of_a_conversation(),
        Index("ix_socket_tickets_conversation", "org_id", "conversation_id"),
        # Serves the purge of expired tickets.
        Index("ix_socket_tickets_expires_at", "expires_at"),
    )


class ApiKey(db.Model):
    """An organization API key. Only a SHA-256 of its secret is stored: the secret is 256
    random bits, so a fast hash is as strong as a slow one and keeps each request cheap."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    org_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # What the key may do (PERMISSIONS); keys issued before there were any have both.
    permissions: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), server_default=ALL_PERMISSIONS
    )
    # May act on behalf of a named person of its organization (X-Act-As-User).
    can_impersonate: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[datetime] = timestamp(server_default=NOW_MS)
    last_used_at: Mapped[datetime | None] = timestamp()
    revoked_at: Mapped[datetime | None] = timestamp()

    __table_args__ = (
        CheckConstraint(OBJECT_ID_CHECK, name="id_is_object_id"),
        CheckConstraint(f"permissions <@ {ALL_PERMISSIONS}", name="permissions_known"),
    )

    @property
    def prefix(self) -> str:
        """What people see to tell keys apart: the start of the plaintext key."""
        return f"{API_KEY_SCHEME}{self.id[:8]}"

    @property
    def user_id(self) -> str:
        """The identity the key acts as inside its organization, stable for its life."""
        return api_key_user_id(self.id)


def api_key_user_id(key_id: str) -> str:
    return f"{API_KEY_IDENTITY_PREFIX}{key_id}"


class Staff(db.Model):
    """A person who signs in to the admin at /admin. Not an API caller: staff never
    own conversations and cannot call the API with their login."""

    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    # Stored lowercased, so uniqueness and sign-in ignore case.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # A werkzeug scrypt hash ("scrypt:n:r:p$salt$hash"); never shown anywhere.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    # Part of every session cookie; bumped on sign-out and deactivation, which ends
    # every session issued before, copies of the cookie included.
    session_version: Mapped[int] = mapped_column(server_default=text("1"))
    created_at: Mapped[datetime] = timestamp(server_default=NOW_MS)
    last_login_at: Mapped[datetime | None] = timestamp()

    __table_args__ = (
        CheckConstraint(OBJECT_ID_CHECK, name="id_is_object_id"),
        CheckConstraint("role IN ('viewer', 'admin')", name="role_known"),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )


class IdempotencyKey(db.Model):
    """A create request made with an `Idempotency-Key` and the response it got, kept 24
    hours so a retry replays it rather than creating again; deleted with its conversation."""

    __tablename__ = "idempotency_keys"

    org_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the validated request, to tell a retry from a different request.
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    conversation_id: Mapped[str | None] = mapped_column(String(24))
    response_status: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = timestamp(server_default=NOW_MS)

    __table_args__ = (
        of_a_conversation(),
        Index("ix_idempotency_keys_conversation", "org_id", "conversation_id"),
        # Serves the purge of expired keys.
        Index("ix_idempotency_keys_created_at", "created_at"),
    )


class AuditEvent(db.Model):
    """A security-relevant event. Append-only: triggers refuse UPDATE, DELETE and TRUNCATE,
    but for a person's erasure (people erase) and the purge of events past the retention."""

    __tablename__ = "audit_events"

    # Empty for an event of no organization's (a staff member signing in).
    org_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    occurred_at: Mapped[datetime] = timestamp(server_default=NOW_MS)
    actor_kind: Mapped[str] = mapped_column(String(16))  # user, api_key, staff, operator
    actor_id: Mapped[str] = mapped_column(String(255))
    acting_for: Mapped[str | None] = mapped_column(String(255))  # the person impersonated
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(128))
    client_address: Mapped[str | None] = mapped_column(String(64))

    # One index per filter of the admin's view, each in the view's order (newest first).
    __table_args__ = (
        Index("ix_audit_events_recent", text("occurred_at DESC"), text("id DESC")),
        Index("ix_audit_events_org", "org_id", text("occurred_at DESC"), text("id DESC")),
        Index("ix_audit_events_actor", "actor_id", text("occurred_at DESC"), text("id DESC")),
        Index("ix_audit_events_action", "action", text("occurred_at DESC"), text("id DESC")),
        Index("ix_audit_events_acting_for", "org_id", "acting_for"),
    )
