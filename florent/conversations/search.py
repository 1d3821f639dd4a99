"""Search: the caller's conversations whose title, or one of whose messages, holds every
word of a query; in the list's order, a keyset page at a time, each with a snippet.

Words are matched by PostgreSQL's full-text search in any language (migration 0010): no
stemming, accents and case ignored, and in Chinese, Japanese and Korean a word matches
inside the text around it. The statement is built once, at import.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import REGCONFIG, TSQUERY

from ..auth import Caller
from ..models import Conversation, Message
from .cursors import Position
from .service import CALLERS, CONVERSATION, NEWEST_FIRST, Page, caller_params, recent_page

SNIPPET_MAX_LENGTH = 200
CONFIGURATION = literal("florent_search", REGCONFIG)
# A fragment of about twenty words centred on the match, nothing marked in it (the API
# sends plain text). ShortWord=0: a CJK character is a word of one letter, and should
# count as much as any other.
HEADLINE_OPTIONS = 'StartSel="", StopSel="", MaxFragments=1, MaxWords=20, MinWords=8, ShortWord=0'
# Set apart each CJK character for the parser (migration 0010); taken out of snippets.
CJK_SEPARATOR = "\x1f"


def matches(vector: ColumnElement, query: ColumnElement) -> ColumnElement[bool]:
    return vector.bool_op("@@")(query)


# The query's words as a tsquery, worked out once per statement.
_QUERY = select(func.florent_search_query(bindparam("q"), type_=TSQUERY).label("q")).cte("query")
QUERY = select(_QUERY.c.q).scalar_subquery()

# The conversations of the caller's messages that match, found through
# ix_messages_search: the index intersects the caller's entries with the words', so what
# other people's messages hold is never read.
_WITH_MESSAGE = select(Message.conversation_id).where(
    Message.org_id == bindparam("caller_org"),
    Message.user_id == bindparam("caller_user"),
    matches(Message.search, QUERY),
)


def _page(*, after: bool) -> Subquery:
    """The caller's conversations with a matching title or message, most recently updated
    first: a walk of ix_conversations_owner_recent (from :after_at/:after_id) that stops
    at :limit, each conversation looked up among the matches in a hash. No join: no
    estimate of the matches' number can make a row cost more than a probe."""
    title_matches = matches(Conversation.search, QUERY)
    page = (
        select(*CONVERSATION, title_matches.label("in_title"))
        .where(CALLERS, or_(title_matches, Conversation.id.in_(_WITH_MESSAGE)))
        .order_by(*NEWEST_FIRST)
        .limit(bindparam("limit"))
    )
    if after:
        page = page.where(
            tuple_(Conversation.updated_at, Conversation.id)
            < tuple_(bindparam("after_at"), bindparam("after_id"))
        )
    return page.subquery("page")


def snippet(text: ColumnElement[str]) -> ColumnElement[str]:
    """The fragment of `text` around the query's best match, as plain text on one line,
    at most SNIPPET_MAX_LENGTH characters."""
    headline = func.ts_headline(
        CONFIGURATION, func.florent_search_text(text), QUERY, HEADLINE_OPTIONS
    )
    plain = func.replace(headline, CJK_SEPARATOR, "")
    one_line = func.btrim(func.regexp_replace(plain, r"\s+", " ", "g"))
    return func.left(one_line, SNIPPET_MAX_LENGTH)


def _with_snippets(page: Subquery) -> Select:
    """The page's conversations, each with its snippet: from the title when it matches,
    else from the conversation's best matching message (by ts_rank, then the newest),
    found along ix_messages_conversation_order for the page's rows only."""
    best = (
        select(Message.content)
        .where(
            ~page.c.in_title,
            Message.org_id == bindparam("caller_org"),
            Message.conversation_id == page.c.id,
            matches(Message.search, QUERY),
        )
        .order_by(
            func.ts_rank(Message.search, QUERY).desc(),
            Message.created_at.desc(),
            Message.id.desc(),
        )
        .limit(1)
        .lateral("best")
    )
    source = case((page.c.in_title, page.c.title), else_=best.c.content)
    return (
        select(*(page.c[column.name] for column in CONVERSATION), snippet(source).label("snippet"))
        .select_from(page)
        .outerjoin(best, true())
        .order_by(page.c.updated_at.desc(), page.c.id.desc())
    )


SEARCH_FIRST = _with_snippets(_page(after=False))
SEARCH_AFTER = _with_snippets(_page(after=True))


def search_conversations(caller: Caller, q: str, *, limit: int, after: Position | None) -> Page:
    """The caller's conversations matching every word of `q`, most recently updated first,
    one keyset page; each row has the conversation's columns and `snippet`."""
    return recent_page(SEARCH_FIRST, SEARCH_AFTER, {**caller_params(caller), "q": q}, limit, after)
