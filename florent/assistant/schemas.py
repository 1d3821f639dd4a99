"""The outputs of chat turns, stops and sockets (a turn's input is the conversations'
MessageCreateSchema)."""

from __future__ import annotations

from marshmallow import fields

from ..conversations.schemas import ConversationSchema, MessageSchema
from ..dumping import OutputSchema, planned


class MessageUnansweredSchema(OutputSchema):
    """The person's message, stored with no reply: no model server is configured."""

    message = fields.Nested(MessageSchema, required=True)
    conversation = fields.Nested(ConversationSchema, required=True)
    assistant = fields.Constant(None, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentMessageUnanswered"


class TurnSchema(OutputSchema):
    """A chat turn: the person's message and Florent's reply, and the conversation after."""

    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        metadata={
            "description": "`[user message, assistant message]`; only the user message when "
            "the reply was stopped before its first word."
        },
    )
    conversation = fields.Nested(ConversationSchema, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentTurn"


class ReplyDeltaSchema(OutputSchema):
    """The data of a `delta` event: the next piece of Florent's reply."""

    text = fields.String(required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentReplyDelta"


class ReplyStoppedSchema(OutputSchema):
    """The data of a `stopped` event: the reply as far as it went (status `stopped`), or
    null when it was stopped before its first word; and the conversation."""

    message = fields.Nested(MessageSchema, required=True, allow_none=True)
    conversation = fields.Nested(ConversationSchema, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentReplyStopped"


class StoppingSchema(OutputSchema):
    stopping = fields.Boolean(required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentStopping"


class AssistantUnavailableSchema(OutputSchema):
    """A turn's 502 (florent/errors.py): Florent gave no reply, and the person's message
    is stored all the same."""

    error = fields.String(required=True, metadata={"enum": ["assistant_unavailable"]})
    message = fields.Nested(MessageSchema, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentAssistantUnavailable"
        description = (
            "The model server gave no reply; `message` is the caller's message, stored all "
            "the same."
        )


class SocketTicketSchema(OutputSchema):
    """A ticket for the conversation's WebSocket: connect to `wsUrl + "?ticket=" + ticket`."""

    ticket = fields.String(required=True, metadata={"description": "Single use."})
    expiresInSeconds = fields.Integer(attribute="expires_in", required=True)
    wsUrl = fields.String(
        attribute="ws_url",
        required=True,
        metadata={"description": "The socket's absolute `ws://` or `wss://` URL."},
    )

    class Meta(OutputSchema.Meta):
        title = "FlorentSocketTicket"


dump_message_unanswered = planned(MessageUnansweredSchema())
dump_turn = planned(TurnSchema())
dump_reply_delta = planned(ReplyDeltaSchema())
dump_reply_stopped = planned(ReplyStoppedSchema())
dump_stopping = planned(StoppingSchema())
dump_socket_ticket = planned(SocketTicketSchema())
