"""What the OpenAPI document says of the assistant's views that their schemas do not."""

from __future__ import annotations

from ..conversations.schemas import MessageCreatedSchema, MessageCreateSchema
from ..openapi import CONVERSATION_ID, Operation, response
from . import views
from .schemas import (
    AssistantUnavailableSchema,
    MessageUnansweredSchema,
    ReplyDeltaSchema,
    ReplyStoppedSchema,
    SocketTicketSchema,
    StoppingSchema,
    TurnSchema,
)

# The components the event stream and the socket carry, which no response names.
COMPONENTS = (MessageCreatedSchema, ReplyDeltaSchema, ReplyStoppedSchema)

TURN_DESCRIPTION = (
    "The caller's message is stored, and Florent's reply with it when a model server is configured."
)
SEND_MESSAGE_DESCRIPTION = (
    "Stores the caller's message, then asks the model for Florent's reply with the newest "
    "messages that fit the history budget, and stores it once complete. With "
    "`Accept: text/event-stream` the reply is streamed as server-sent events; otherwise the "
    "response waits for it. One turn at a time per conversation, and a few replies in progress "
    "at once per caller. The first message of a conversation still titled `New conversation` "
    "(and never renamed) titles it. Without a model server, the message is stored and answered "
    "with `assistant: null`."
)
EVENT_STREAM_DESCRIPTION = (
    "Server-sent events, each `event: <name>` and one line of JSON `data`, in this order: "
    "`message` (`FlorentMessageCreated`: the caller's stored message and the conversation), "
    "then `delta` (`FlorentReplyDelta`) as the reply is generated, then either `done` "
    "(`FlorentMessageCreated`: Florent's stored message and the updated conversation) or "
    "`error` (`ErrorResponse`: `assistant_unavailable` when the model server failed, timed "
    "out or cut its reply short; `not_found` when the conversation was deleted meanwhile; "
    "`service_unavailable`). After an `error`, the caller's message stays stored and no "
    "partial reply is. A client that disconnects abandons the reply."
)


TURN_CONTENT = {
    "application/json": {"schema": {"oneOf": [TurnSchema, MessageUnansweredSchema]}},
    # A media type has no description of its own in OpenAPI 3.1: its schema carries it.
    views.EVENT_STREAM: {"schema": {"type": "string", "description": EVENT_STREAM_DESCRIPTION}},
}
OPERATIONS = (
    Operation(
        views.send_message,
        "post",
        "post-florent-conversation-message",
        "Send a message to Florent, and get its reply",
        (201, response(TURN_DESCRIPTION, content=TURN_CONTENT)),
        (400, 404, 409, 413, 502),
        description=SEND_MESSAGE_DESCRIPTION,
        parameters=(CONVERSATION_ID,),
        body=MessageCreateSchema,
        error_descriptions={
            409: "`reply_in_progress`: Florent is still answering in this conversation; "
            "`conversation_full`: it holds as many messages as it may. Nothing was stored.",
            429: "`rate_limited`, or `too_many_replies`: the caller has as many replies in "
            "progress as they may. Nothing was stored; retry after `Retry-After` seconds.",
        },
        error_schemas={502: AssistantUnavailableSchema},
    ),
    Operation(
        views.stop_reply,
        "post",
        "post-florent-conversation-stop",
        "Stop Florent's reply in progress",
        (202, response("The reply is stopping; it ends within a second.", StoppingSchema)),
        (404, 409),
        description="Works whichever process or instance relays the reply. What was "
        "generated so far is stored as Florent's message with `status` `stopped`.",
        parameters=(CONVERSATION_ID,),
        error_descriptions={409: "`no_reply_in_progress`: Florent is not replying here."},
    ),
    Operation(
        views.socket_ticket,
        "post",
        "post-florent-conversation-ws-ticket",
        "Mint a ticket for the conversation's WebSocket",
        (201, response("A single-use ticket, good for 60 seconds.", SocketTicketSchema)),
        (404,),
        description='Connect to `wsUrl + "?ticket=" + ticket`: the socket carries JSON '
        "frames, `message` and `stop` in, `message`, `delta`, `done`, `stopped` and `error` "
        "out (docs/api.md). A bad ticket is refused with a 401 before any upgrade.",
        parameters=(CONVERSATION_ID,),
    ),
)
