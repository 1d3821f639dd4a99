"""Conversations, most recently updated first, and one conversation's messages a page
at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from flask import request
from flask_admin.contrib.sqla.filters import FilterEqual
from sqlalchemy import select, tuple_

from ...extensions import db
from ...ids import is_object_id
from ...models import Conversation, Message
from .base import StaffModelView, link, record_opened

# A conversation's detail page shows this many of its messages at a time.
MESSAGES_PER_PAGE = 50


@dataclass(frozen=True)
class MessagePage:
    """Some of a conversation's messages, oldest first, and whether others come before
    or after them."""

    messages: list[Message]
    earlier: bool
    later: bool


def message_page(conversation: Conversation, args: Mapping[str, str]) -> MessagePage:
    """The page the query string asks for: `after` or `before` a message of this
    conversation, or its `latest` messages; the conversation's first messages otherwise
    (and whenever the request is not one of those).

    Each page is one walk of ix_messages_conversation_order from a keyset position
    (created_at, id), never an OFFSET, so the last page costs what the first does.
    """
    asked = [(name, args[name]) for name in ("after", "before", "latest") if name in args]
    walk = select(Message).where(
        Message.org_id == conversation.org_id, Message.conversation_id == conversation.id
    )
    if len(asked) == 1:
        ((name, value),) = asked
        if name == "latest" and value == "1":
            return _backwards(walk, later=False)
        if name != "latest" and (anchor := _anchor(conversation, value)) is not None:
            position = tuple_(Message.created_at, Message.id)
            if name == "after":
                return _forwards(walk.where(position > anchor), earlier=True)
            return _backwards(walk.where(position < anchor), later=True)
    return _forwards(walk, earlier=False)


def _anchor(conversation: Conversation, message_id: str) -> Any:
    """The keyset position of one of the conversation's messages, if it is one."""
    if not is_object_id(message_id):
        return None
    position = db.session.execute(
        select(Message.created_at, Message.id).where(
            Message.org_id == conversation.org_id,
            Message.id == message_id,
            Message.conversation_id == conversation.id,
        )
    ).first()
    return None if position is None else tuple_(*position)


def _forwards(walk: Any, *, earlier: bool) -> MessagePage:
    rows = list(
        db.session.scalars(
            walk.order_by(Message.created_at, Message.id).limit(MESSAGES_PER_PAGE + 1)
        )
    )
    return MessagePage(rows[:MESSAGES_PER_PAGE], earlier, later=len(rows) > MESSAGES_PER_PAGE)


def _backwards(walk: Any, *, later: bool) -> MessagePage:
    rows = list(
        db.session.scalars(
            walk.order_by(Message.created_at.desc(), Message.id.desc()).limit(MESSAGES_PER_PAGE + 1)
        )
    )
    return MessagePage(
        rows[:MESSAGES_PER_PAGE][::-1], earlier=len(rows) > MESSAGES_PER_PAGE, later=later
    )


class ConversationView(StaffModelView):
    can_view_details = True
    details_template = "staff_admin/conversation_details.html"
    column_list = (
        "title",
        "org_id",
        "user_id",
        "model",
        "message_count",
        "last_message_at",
        "created_at",
        "updated_at",
    )
    column_details_list = ("id", *column_list[:4], "user_display", "timezone", *column_list[4:])
    column_labels: ClassVar[dict[str, str]] = {
        "id": "Id",
        "title": "Title",
        "org_id": "Organization",
        "user_id": "Owner",
        "message_count": "Messages",
        "last_message_at": "Last message",
        "created_at": "Created",
        "updated_at": "Updated",
        "user_display": "Addressed as",
    }
    column_searchable_list = ("title", "user_id", "org_id")
    column_filters = (
        FilterEqual(Conversation.org_id, "Organization"),
        FilterEqual(Conversation.user_id, "Owner"),
        "created_at",
        "updated_at",
    )
    # Most recently updated first, as the API lists a caller's conversations:
    # ix_conversations_recent (updated_at DESC, id DESC) serves it, read from either end.
    # Ids start with their creation second, so the primary key serves sorting by creation.
    # Other columns are not sortable: with no index behind them, each page would sort
    # the whole table.
    column_default_sort: ClassVar[list[tuple[str, bool]]] = [("updated_at", True), ("id", True)]
    sort_by: ClassVar[dict[str, Any] | None] = {
        "created_at": Conversation.id,
        "updated_at": [Conversation.updated_at, Conversation.id],
    }
    column_formatters: ClassVar[dict[str, Any]] = {
        "title": lambda view, context, model, name: link(
            view.get_url(".details_view", id=view.get_pk_value(model)), model.title
        ),
    }
    column_formatters_detail: ClassVar[dict[str, Any]] = {}
    messages_per_page = MESSAGES_PER_PAGE

    def message_page(self, conversation: Conversation) -> MessagePage:
        """The page of the conversation's messages this request asks for (its details
        page shows one), recorded in the audit trail as the staff member's reading."""
        record_opened(conversation.org_id, conversation.id)
        return message_page(conversation, request.args)
