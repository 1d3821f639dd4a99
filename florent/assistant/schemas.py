"""The outputs of a chat turn (its input is the conversations' MessageCreateSchema)."""

from __future__ import annotations

from marshmallow import fields

from ..conversations.schemas import ConversationSchema, MessageSchema, OutputSchema


class MessageUnansweredSchema(OutputSchema):
    """The person's message, stored with no reply: no model server is configured."""

    message = fields.Nested(MessageSchema, required=True)
    conversation = fields.Nested(ConversationSchema, required=True)
    assistant = fields.Constant(None, required=True, metadata={"type": "null"})

    class Meta(OutputSchema.Meta):
        title = "FlorentMessageUnanswered"


class TurnSchema(OutputSchema):
    """A chat turn: the person's message and Florent's reply, and the conversation after."""

    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        metadata={"description": "`[user message, assistant message]`."},
    )
    conversation = fields.Nested(ConversationSchema, required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentTurn"


class ReplyDeltaSchema(OutputSchema):
    """The data of a `delta` event: the next piece of Florent's reply."""

    text = fields.String(required=True)

    class Meta(OutputSchema.Meta):
        title = "FlorentReplyDelta"


message_unanswered_schema = MessageUnansweredSchema()
turn_schema = TurnSchema()
reply_delta_schema = ReplyDeltaSchema()
