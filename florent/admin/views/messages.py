"""Messages, newest first, each with its conversation's title; a message's content only
on its own page, whose opening the audit trail records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from flask import g, url_for
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.tools import iterencode
from markupsafe import Markup
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Query, defer

from ...extensions import db
from ...models import Conversation, Message
from .base import StaffModelView, link, record_opened


def remember_titles(messages: Iterable[Message]) -> None:
    """The titles of these messages' conversations, read in one statement (there is no
    relationship to load them by), for the rows about to be shown."""
    keys = {(message.org_id, message.conversation_id) for message in messages}
    rows = (
        db.session.execute(
            select(Conversation.org_id, Conversation.id, Conversation.title).where(
                tuple_(Conversation.org_id, Conversation.id).in_(keys)
            )
        ).all()
        if keys
        else []
    )
    g.admin_conversation_titles = {(org_id, id_): title for org_id, id_, title in rows}


def conversation_link(message: Message) -> Any:
    key = (message.org_id, message.conversation_id)
    title = g.get("admin_conversation_titles", {}).get(key)
    return link(
        url_for("conversations.details_view", id=iterencode(key)),
        title or message.conversation_id,
    )


class MessageView(StaffModelView):
    can_view_details = True
    # No content in the list: paging through it would read everyone's messages with
    # nothing in the audit trail. A message's content is on its details page.
    column_list = ("conversation_id", "role", "status", "content_chars", "created_at")
    column_details_list = ("id", "conversation_id", "role", "status", "created_at", "content")
    column_labels: ClassVar[dict[str, str]] = {
        "id": "Id",
        "conversation_id": "Conversation",
        "content_chars": "Characters",
        "created_at": "Created",
    }
    column_filters = (
        FilterEqual(Message.conversation_id, "Conversation"),
        FilterEqual(Message.role, "Role"),
        "created_at",
    )
    column_default_sort = ("id", True)
    sort_by: ClassVar[dict[str, Any] | None] = {"created_at": Message.id}
    column_formatters: ClassVar[dict[str, Any]] = {
        "conversation_id": lambda view, context, model, name: conversation_link(model),
    }
    column_formatters_detail: ClassVar[dict[str, Any]] = {
        "conversation_id": lambda view, context, model, name: conversation_link(model),
        "content": lambda view, context, model, name: Markup(
            '<div class="message-content">{}</div>'
        ).format(model.content),
    }

    def get_query(self) -> Query[Message]:
        # The list reads no message's content: touching one there raises, never loads it.
        return super().get_query().options(defer(Message.content, raiseload=True))

    def get_list(  # type: ignore[override]
        self,
        page: int | None,
        sort_column: str | None,
        sort_desc: bool,
        search: str | None,
        filters: Any,
        execute: bool = True,
        page_size: int | None = None,
    ) -> tuple[int | None, Any]:
        count, messages = super().get_list(
            page, sort_column, sort_desc, search, filters, execute, page_size
        )
        if execute:
            remember_titles(messages)
        return count, messages

    def get_one(self, id: Any) -> Message | None:
        """The message its details page shows, in full: an opening of its conversation."""
        message = super().get_one(id)
        if message is not None:
            record_opened(message.org_id, message.conversation_id)
            remember_titles([message])
        return message
