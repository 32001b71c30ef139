"""The tables as the code reads and writes them; `migrations/versions/` is how a database gets there.

Times are unix seconds (floats), JSON is stored as text: the same columns the SQLite chat log had
before migrations, so old files need no conversion.
"""

from sqlalchemy import CheckConstraint, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

chats = Table(
    "chats", metadata,
    Column("id", Integer, primary_key=True),
    Column("created", Float, nullable=False),
    Column("session", Text, nullable=False),          # the chat session, or an API key's owner
    Column("course", Text, nullable=False),
    Column("mode", Text, nullable=False, server_default="explain"),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("citations", Text, nullable=False, server_default="[]"),   # JSON: the Answer's citations
    Column("demos", Text, nullable=False, server_default="[]"),       # JSON
    Column("refused", Text),                                           # NULL | out_of_scope | homework
    Column("backend", Text, nullable=False, server_default=""),
    Column("model", Text, nullable=False, server_default=""),
    Column("timings", Text, nullable=False, server_default="{}"),     # JSON: seconds per stage
    Column("top_similarity", Float),
    Column("notice", Text, nullable=False, server_default=""),
    Column("api_key_id", Integer),                                     # NULL: asked in the chat page
    Index("chats_course_created", "course", "created"),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True),
    Column("chat_id", Integer, ForeignKey("chats.id"), nullable=False),
    Column("created", Float, nullable=False),
    Column("session", Text, nullable=False),
    Column("rating", Integer, CheckConstraint("rating IN (-1, 1)"), nullable=False),
    Column("category", Text),
    Column("comment", Text, nullable=False, server_default=""),
    Index("feedback_chat", "chat_id"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),   # sha256 of the key; the key is never stored
    Column("prefix", Text, nullable=False),                      # its first characters, to recognise it
    Column("owner", Text, nullable=False),
    Column("course", Text, nullable=False),                      # a course id, or "*" for every course
    Column("created", Float, nullable=False),
    Column("revoked", Float),
)

# One row per question admitted by the quotas (`tutor/quotas.py`), kept about a day.
asked = Table(
    "asked", metadata,
    Column("id", Integer, primary_key=True),
    Column("created", Float, nullable=False),
    Column("student", Text, nullable=False),
    Column("course", Text, nullable=False),
    Column("api_key_id", Integer),
    Column("finished", Float),                                   # NULL while the answer is being written
    Index("asked_student", "student", "course", "created"),
    Index("asked_key_running", "api_key_id", "finished"),
)
