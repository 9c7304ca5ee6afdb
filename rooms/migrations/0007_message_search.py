"""The full-text index of messages (rooms/services/search.py): an FTS5 table on SQLite, a
generated tsvector column with a GIN index on PostgreSQL. Neither is a model field: each
exists on its own database only, and only the search service reads it."""

from django.db import migrations


class VendorSQL(migrations.RunSQL):
    """RunSQL that runs on one database vendor only ("sqlite", "postgresql")."""

    def __init__(self, vendor: str, sql: str, reverse_sql: str) -> None:
        super().__init__(sql, reverse_sql)
        self.vendor = vendor

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == self.vendor:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == self.vendor:
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"Raw SQL for {self.vendor}"


# The rowid is the message's id. The table keeps its own copy of the text (snippet() reads
# it), and its room and author as one token each ("r12", "a7") so a search in some rooms
# or by one person is narrowed inside the index; written by
# rooms.services.search.index_message in the message's own transaction. unicode61 splits
# on everything but letters and digits and folds case and accents; the prefix indexes
# make "meet" (which matches "meeting") a lookup rather than a scan.
SQLITE_FORWARDS = [
    """
    CREATE VIRTUAL TABLE rooms_message_fts USING fts5(
        body, room, author, tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
    )
    """,
    # Messages stored before this migration, as index_message would have written them.
    """
    INSERT INTO rooms_message_fts (rowid, body, room, author)
    SELECT id, replace(replace(body, char(2), ' '), char(3), ' '), 'r' || room_id,
        coalesce('a' || author_id, '')
    FROM rooms_message
    WHERE kind <> 'system' AND deleted_at IS NULL AND body <> ''
    """,
]

# 'simple': lower case, no stemming and no stop words, the same for every language people
# write in. Generated, so the column follows the text in the statement that changes it:
# a post, an edit, a delete (the text is emptied) update it with no code of ours.
POSTGRES_FORWARDS = [
    """
    ALTER TABLE rooms_message ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, coalesce(body, ''))) STORED
    """,
    "CREATE INDEX rooms_message_search ON rooms_message USING gin (search_vector)",
]


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0006_reactions"),
    ]

    operations = [
        VendorSQL("sqlite", SQLITE_FORWARDS, "DROP TABLE rooms_message_fts"),
        VendorSQL(
            "postgresql",
            POSTGRES_FORWARDS,
            [
                "DROP INDEX rooms_message_search",
                "ALTER TABLE rooms_message DROP COLUMN search_vector",
            ],
        ),
    ]
