"""The conversations API's contract: marshmallow schemas for every input and output.

The OpenAPI document is generated from these (florent/openapi.py): the seed's
components are `ConversationSchema`, `ConversationResponseSchema` and
`ErrorResponseSchema`, kept field for field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields

from ..dumping import OutputSchema, planned
from ..validation import InputSchema, Issue, Limit, Text

TITLE_MAX_LENGTH = 120
CONTENT_MAX_LENGTH = 32_000
QUERY_MAX_LENGTH = 200
MESSAGES_PAGE_DEFAULT = 100
MESSAGES_PAGE_MAX = 200


class Timestamp(fields.Field):
    """ISO 8601 in UTC with millisecond precision and a Z suffix."""

    formats_value_only = True  # what the planned dumpers need to know (florent/dumping.py)

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any):
        if value is None:
            return None
        return format_timestamp(value)


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Count(fields.Integer):
    """A count, described as the product's documents describe it: a JSON number."""


# -- Conversations -----------------------------------------------------------------


class ConversationSchema(OutputSchema):
    _id = fields.String(attribute="id", required=True)
    userId = fields.String(attribute="user_id", required=True)
    title = fields.String(required=True)
    model = fields.String(required=True)
    messageCount = Count(attribute="message_count", required=True)
    lastMessageAt = Timestamp(attribute="last_message_at", required=True, allow_none=True)
    createdAt = Timestamp(attribute="created_at", required=True)
    updatedAt = Timestamp(attribute="updated_at", required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentConversation"


class ConversationResponseSchema(OutputSchema):
    conversation = fields.Nested(ConversationSchema, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationResponse"


class ConversationCreateSchema(InputSchema):
    title = Text(min_length=1, max_length=TITLE_MAX_LENGTH)
    user_display = Text(max_length=200, data_key="userDisplay")
    timezone = Text(max_length=100)


class ConversationRenameSchema(InputSchema):
    title = Text(min_length=1, max_length=TITLE_MAX_LENGTH, required=True)


class SearchWords(Text):
    """A search query: 1 to QUERY_MAX_LENGTH characters, at least one of them not a space."""

    def __init__(self, **kwargs: Any):
        super().__init__(min_length=1, max_length=QUERY_MAX_LENGTH, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        words = super()._deserialize(value, attr, data, **kwargs)
        if not words.strip():
            raise ValidationError(Issue("blank", "Must hold at least one word."))
        return words


class ConversationListQuerySchema(InputSchema):
    limit = Limit(minimum=1, maximum=100, load_default=30)
    cursor = Text(
        min_length=1,
        max_length=200,
        load_default=None,
        metadata={
            "description": "The `nextCursor` of the previous page (of the same search, with `q`)."
        },
    )
    q = SearchWords(
        load_default=None,
        metadata={
            "description": "Only the conversations whose title, or one of whose messages, "
            "holds every word (any language; case and accents ignored; no stemming). Each "
            "then has a `snippet`."
        },
    )


class ConversationPageSchema(OutputSchema):
    conversations = fields.List(fields.Nested(ConversationSchema), required=True)
    nextCursor = fields.String(attribute="next_cursor", required=True, allow_none=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationList"


class ConversationMatchSchema(ConversationSchema):
    snippet = fields.String(
        required=True,
        metadata={
            "description": "Plain text around the best match, at most 200 characters: from "
            "the title when it matches, else from the best matching message."
        },
    )

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationMatch"


class ConversationSearchPageSchema(OutputSchema):
    conversations = fields.List(
        fields.Nested(ConversationMatchSchema),
        required=True,
        metadata={"description": "Matching conversations, most recently updated first."},
    )
    nextCursor = fields.String(
        attribute="next_cursor",
        required=True,
        allow_none=True,
        metadata={"description": "Continues this search only (the same `q`)."},
    )

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationSearchPage"


class ConversationsErasedSchema(OutputSchema):
    deleted = Count(required=True, metadata={"description": "How many conversations were erased."})

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationsErased"


# -- Messages ----------------------------------------------------------------------


class MessageSchema(OutputSchema):
    _id = fields.String(attribute="id", required=True)
    conversationId = fields.String(attribute="conversation_id", required=True)
    role = fields.String(required=True, metadata={"enum": ["user", "assistant"]})
    content = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={
            "enum": ["complete", "stopped"],
            "description": "`stopped`: a reply of Florent's stopped by the person; what was "
            "generated until then.",
        },
    )
    createdAt = Timestamp(attribute="created_at", required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentMessage"


class ConversationQuerySchema(InputSchema):
    messages_limit = Limit(
        minimum=1,
        maximum=MESSAGES_PAGE_MAX,
        load_default=MESSAGES_PAGE_DEFAULT,
        data_key="messagesLimit",
        metadata={"description": "How many of the newest messages to include."},
    )


class ConversationDetailSchema(OutputSchema):
    conversation = fields.Nested(ConversationSchema, required=True)
    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        metadata={"description": "The newest messages, oldest first."},
    )
    olderMessagesCursor = fields.String(
        attribute="older_cursor",
        required=True,
        allow_none=True,
        metadata={"description": "Pass to `GET .../messages?cursor=` for earlier messages."},
    )

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationDetail"


class MessagePageQuerySchema(InputSchema):
    limit = Limit(minimum=1, maximum=MESSAGES_PAGE_MAX, load_default=MESSAGES_PAGE_DEFAULT)
    cursor = Text(
        min_length=1,
        max_length=200,
        load_default=None,
        metadata={"description": "An `olderMessagesCursor`; without it, the newest messages."},
    )


class MessagePageSchema(OutputSchema):
    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        metadata={"description": "Messages before the cursor, oldest first."},
    )
    olderMessagesCursor = fields.String(attribute="older_cursor", required=True, allow_none=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentMessagePage"


class ConversationExportSchema(ConversationSchema):
    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        metadata={"description": "All its messages, oldest first."},
    )

    class Meta(OutputSchema.Meta):
        title = "FlorentConversationExport"
        description = "One line of an export: a conversation with all its messages."


class MessageCreateSchema(InputSchema):
    content = Text(min_length=1, max_length=CONTENT_MAX_LENGTH, required=True)


class MessageCreatedSchema(OutputSchema):
    message = fields.Nested(MessageSchema, required=True)
    conversation = fields.Nested(ConversationSchema, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentMessageCreated"


# -- Errors --------------------------------------------------------------------------


class ErrorResponseSchema(OutputSchema):
    error = fields.String(
        required=True,
        metadata={"description": "Machine-readable error code (e.g. `invalid_body`, `not_found`)."},
    )
    issues = fields.List(
        fields.Raw(metadata={"description": "Any type"}),
        metadata={
            "description": "Schema-validation issues, present when `error` is `invalid_body`."
        },
    )

    class Meta(OutputSchema.Meta):
        title = "ErrorResponse"
        description = "Standard API error response."


# Each response's dumper, planned once from its schema (florent/dumping.py).
dump_conversation = planned(ConversationSchema())
dump_conversation_response = planned(ConversationResponseSchema())
dump_conversation_page = planned(ConversationPageSchema())
dump_conversation_search_page = planned(ConversationSearchPageSchema())
dump_conversations_erased = planned(ConversationsErasedSchema())
dump_conversation_detail = planned(ConversationDetailSchema())
dump_message = planned(MessageSchema())
dump_message_page = planned(MessagePageSchema())
dump_message_created = planned(MessageCreatedSchema())
