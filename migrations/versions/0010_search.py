"""Search: a full-text vector on every title and message, and the owner on every message.

Any language, no stemming: the `florent_search` text search configuration is `simple`
with `unaccent` in front, so "zurich" finds "Zürich" and no language's words are cut to
stems. Chinese, Japanese and Korean are written without spaces between words, where the
parser would take a whole run of text for one word: `florent_search_text` sets each of
their characters apart, and `florent_search_query` asks for a word's characters side by
side (a phrase), so a word matches wherever it appears in the text.

Messages learn their owner from their conversation, so one GIN index (with btree_gin)
finds a person's matching messages whatever the others' hold. The app names the owner
when it inserts a message; a trigger fills it in for writers that do not (SQL loads).
The index takes each message as it comes (fastupdate off): with GIN's pending list, every
search would read all of everyone's recent messages, and one insert in many would pay
for merging them (measured: a message insert costs 0.4 ms more, and no search or insert
waits on a merge).

Both tables are rewritten under a lock for as long as that takes (a stored vector is
computed for every row; messages are also written once more to learn their owner, and
the rewrite sheds those dead rows), then the index is built: on large tables, run this in
a quiet hour.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Every token type of the default parser that the `simple` configuration indexes.
TOKEN_TYPES = (
    "asciiword, word, numword, asciihword, hword, numhword, hword_asciipart, hword_part, "
    "hword_numpart, email, url, host, url_path, file, sfloat, float, int, uint, version"
)
CONFIGURATION = f"""
CREATE TEXT SEARCH CONFIGURATION florent_search (COPY = pg_catalog.simple);
ALTER TEXT SEARCH CONFIGURATION florent_search
    ALTER MAPPING FOR {TOKEN_TYPES} WITH {{unaccent}}, pg_catalog.simple;
"""
# Hiragana, katakana, CJK ideographs (and their extension A and compatibility forms),
# Hangul syllables, half-width katakana: each becomes a word of its own, between two
# U+001F (a control character no stored text may hold, so none is lost when the
# separators are taken out of a snippet).
SEARCH_TEXT = r"""
CREATE FUNCTION florent_search_text(content text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(
    content,
    '([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff66-\uff9f])',
    E'\x1f\\1\x1f',
    'g'
);
"""
# Every word of the query, each a phrase of its tokens (its characters, in CJK), all
# required. A query of no word at all is an empty tsquery, which matches nothing.
SEARCH_QUERY = r"""
CREATE FUNCTION florent_search_query(words text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce(string_agg('(' || word::text || ')', ' & ')::tsquery, ''::tsquery)
    FROM regexp_split_to_table(words, '\s+') AS split,
         phraseto_tsquery('florent_search', florent_search_text(split)) AS word
    WHERE numnode(word) > 0;
END;
"""
# Without a conversation, the message fails as its foreign key would, before the NOT NULL
# check could: that one's error would quote the whole row, the content included.
MESSAGE_OWNER = """
CREATE FUNCTION messages_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT c.user_id INTO NEW.user_id FROM conversations AS c
    WHERE c.org_id = NEW.org_id AND c.id = NEW.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'a message of no conversation: % of organization %',
            NEW.conversation_id, NEW.org_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER messages_owner BEFORE INSERT ON messages
    FOR EACH ROW WHEN (NEW.user_id IS NULL) EXECUTE FUNCTION messages_owner();
"""


def vector(column: str) -> str:
    return f"to_tsvector('florent_search'::regconfig, florent_search_text({column}))"


def upgrade():
    # Trusted extensions: the database's owner may create them.
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    # The dictionary by its schema, wherever the extension was installed.
    unaccent = op.get_bind().scalar(
        sa.text(
            "SELECT format('%I.unaccent', extnamespace::regnamespace) "
            "FROM pg_extension WHERE extname = 'unaccent'"
        )
    )
    op.execute(CONFIGURATION.format(unaccent=unaccent))
    op.execute(SEARCH_TEXT)
    op.execute(SEARCH_QUERY)

    op.add_column(
        "conversations",
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(vector("(title)::text"), persisted=True),
            nullable=False,
        ),
    )

    op.add_column("messages", sa.Column("user_id", sa.String(255), nullable=True))
    op.execute(
        "UPDATE messages AS m SET user_id = c.user_id FROM conversations AS c "
        "WHERE c.org_id = m.org_id AND c.id = m.conversation_id"
    )
    # One statement, so one rewrite of the table that checks the owner as it goes.
    op.execute(
        "ALTER TABLE messages ALTER COLUMN user_id SET NOT NULL, "
        f"ADD COLUMN search tsvector GENERATED ALWAYS AS ({vector('content')}) STORED NOT NULL"
    )
    op.execute(MESSAGE_OWNER)
    op.create_index(
        "ix_messages_search",
        "messages",
        ["org_id", "user_id", "search"],
        postgresql_using="gin",
        postgresql_with={"fastupdate": "off"},
    )


def downgrade():
    op.drop_index("ix_messages_search", table_name="messages")
    op.execute("DROP TRIGGER messages_owner ON messages")
    op.execute("DROP FUNCTION messages_owner()")
    op.drop_column("messages", "search")
    op.drop_column("messages", "user_id")
    op.drop_column("conversations", "search")
    op.execute("DROP FUNCTION florent_search_query(text)")
    op.execute("DROP FUNCTION florent_search_text(text)")
    op.execute("DROP TEXT SEARCH CONFIGURATION florent_search")
    # The extensions stay: other schemas may use them, and they hold no data.
