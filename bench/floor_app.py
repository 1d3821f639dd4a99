"""The floor of the JSON API's cost under the rules of the issue "One clear codebase":
the service's own use cases (its statements through SQLAlchemy's pooled connections,
with the pool's checkout check) and its own dumpers, at the service's paths, with
nothing else around them: no authentication, no validation of the query or body, no
cursors, no request id, no access line, no hooks. A 201 still names its Location, as
the contract's does. `run.py --floor` serves it beside the baseline with the same
gunicorn settings. Every feature the service adds costs on top of these figures.
"""

from flask import Flask, Response, request, url_for

from florent.auth import Caller
from florent.config import read_settings, sqlalchemy_url
from florent.conversations import messages, service
from florent.conversations.schemas import (
    MESSAGES_PAGE_DEFAULT,
    dump_conversation_detail,
    dump_conversation_page,
    dump_conversation_response,
)
from florent.database import database_config, init_database
from florent.errors import json_response
from florent.extensions import db

settings = read_settings()
app = Flask(__name__)
app.config.update(database_config(sqlalchemy_url(settings.database_url), settings))
db.init_app(app)
init_database(app)
# The caller run.py's token names; here nobody checks a token.
CALLER = Caller(org_id="org_bench", user_id="user_bench", valid_until=float("inf"))


@app.get("/api/florent/conversations")
def list_conversations() -> Response:
    page = service.list_conversations(CALLER, limit=int(request.args["limit"]), after=None)
    return json_response(
        dump_conversation_page({"conversations": page.rows, "next_cursor": None}), 200
    )


@app.post("/api/florent/conversations")
def create_conversation() -> Response:
    conversation = service.create_conversation(
        CALLER, model=settings.model, **request.get_json(force=True)
    )
    return json_response(
        dump_conversation_response({"conversation": conversation}),
        201,
        {"Location": url_for("get_conversation", conversation_id=conversation.id)},
    )


@app.get("/api/florent/conversations/<conversation_id>")
def get_conversation(conversation_id: str) -> Response:
    conversation, newest = messages.get_conversation(
        CALLER, conversation_id, messages_limit=MESSAGES_PAGE_DEFAULT
    )
    return json_response(
        dump_conversation_detail(
            {"conversation": conversation, "messages": newest.rows, "older_cursor": None}
        ),
        200,
    )
