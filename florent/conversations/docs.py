"""What the OpenAPI document says of the conversations' views that their schemas do not."""

from __future__ import annotations

from ..openapi import CONVERSATION_ID, Operation, response
from . import views
from .schemas import (
    ConversationCreateSchema,
    ConversationDetailSchema,
    ConversationExportSchema,
    ConversationListQuerySchema,
    ConversationPageSchema,
    ConversationQuerySchema,
    ConversationRenameSchema,
    ConversationResponseSchema,
    ConversationSearchPageSchema,
    ConversationsErasedSchema,
    MessagePageQuerySchema,
    MessagePageSchema,
)

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "Makes the create safe to retry: the same key and body within 24 hours "
    "replay the first response (with `Idempotent-Replayed: true`); the same key with "
    "another body is a 422. 1 to 255 printable ASCII characters, quoted or not.",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
LOCATION = {"Location": {"description": "The conversation's URL.", "schema": {"type": "string"}}}
OPERATIONS = (
    Operation(
        views.create_conversation,
        "post",
        "post-florent-conversations",
        "Create a Florent conversation",
        (201, response("The created conversation.", ConversationResponseSchema, headers=LOCATION)),
        (400, 413, 422),
        description="Starts a new org-level Florent builder-chat conversation owned by the "
        "caller. Open to every org member.",
        parameters=(IDEMPOTENCY_KEY,),
        body=ConversationCreateSchema,
        optional_body=True,
    ),
    Operation(
        views.list_conversations,
        "get",
        "get-florent-conversations",
        "List the caller's Florent conversations",
        (
            200,
            response(
                "One page of conversations (`FlorentConversationList`); with `q`, of the "
                "matching ones, each with its snippet (`FlorentConversationSearchPage`).",
                {"anyOf": [ConversationPageSchema, ConversationSearchPageSchema]},
            ),
        ),
        (400,),
        description="Most recently updated first, keyset-paginated. With `q`, only the "
        "conversations whose title, or one of whose messages, holds every word of it, in the "
        "same order and pages; a cursor continues the search it came from only. Matching is "
        "PostgreSQL full-text search in any language: whole words, no stemming, case and "
        "accents ignored (`zurich` finds `Zürich`); in Chinese, Japanese and Korean a word "
        "matches wherever its characters stand side by side.",
        query=ConversationListQuerySchema,
    ),
    Operation(
        views.erase_conversations,
        "delete",
        "delete-florent-conversations",
        "Erase all the caller's Florent conversations",
        (200, response("How many conversations were erased.", ConversationsErasedSchema)),
        description="Every conversation of the caller goes, with its messages, idempotency "
        "keys and WebSocket tickets, a batch at a time. Safe to repeat: once nothing is left, "
        "`deleted` is 0.",
    ),
    Operation(
        views.export_conversations,
        "get",
        "get-florent-export",
        "Export all the caller's Florent conversations",
        (
            200,
            {
                "description": "Newline-delimited JSON, streamed: one line per conversation "
                "(`FlorentConversationExport`), most recently updated first, each with all its "
                "messages oldest first, all read in one snapshot. A last line without its "
                "newline means the export was cut short: start it again.",
                "content": {"application/x-ndjson": {"schema": ConversationExportSchema}},
            },
        ),
        error_descriptions={
            429: "`rate_limited`, or `export_in_progress`: the caller's previous export is "
            "still being sent (one at a time); retry after `Retry-After` seconds.",
            503: "`service_unavailable`: PostgreSQL is unreachable, or this instance is "
            "sending as many exports as it may; retry after `Retry-After` seconds.",
        },
    ),
    Operation(
        views.get_conversation,
        "get",
        "get-florent-conversation",
        "Get a Florent conversation with its newest messages",
        (200, response("The conversation and its newest messages.", ConversationDetailSchema)),
        (400, 404),
        description="At most `messagesLimit` messages, the newest, oldest first; "
        "`olderMessagesCursor` pages back through the rest.",
        parameters=(CONVERSATION_ID,),
        query=ConversationQuerySchema,
    ),
    Operation(
        views.list_messages,
        "get",
        "get-florent-conversation-messages",
        "Page back through a Florent conversation's messages",
        (200, response("Messages before the cursor, oldest first.", MessagePageSchema)),
        (400, 404),
        parameters=(CONVERSATION_ID,),
        query=MessagePageQuerySchema,
    ),
    Operation(
        views.rename_conversation,
        "patch",
        "patch-florent-conversation",
        "Rename a Florent conversation",
        (200, response("The renamed conversation.", ConversationResponseSchema)),
        (400, 404, 413),
        parameters=(CONVERSATION_ID,),
        body=ConversationRenameSchema,
    ),
    Operation(
        views.delete_conversation,
        "delete",
        "delete-florent-conversation",
        "Delete a Florent conversation and its messages",
        (204, response("Deleted.")),
        (404,),
        parameters=(CONVERSATION_ID,),
    ),
)
