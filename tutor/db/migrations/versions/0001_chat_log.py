"""The chat log as it was before migrations: chats and their feedback.

A database written by that code already has these tables (with rows): they are adopted as they are.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "chats" not in existing:
        op.create_table(
            "chats",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("session", sa.Text, nullable=False),
            sa.Column("course", sa.Text, nullable=False),
            sa.Column("mode", sa.Text, nullable=False, server_default="explain"),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("citations", sa.Text, nullable=False, server_default="[]"),
            sa.Column("demos", sa.Text, nullable=False, server_default="[]"),
            sa.Column("refused", sa.Text),
            sa.Column("backend", sa.Text, nullable=False, server_default=""),
            sa.Column("model", sa.Text, nullable=False, server_default=""),
            sa.Column("timings", sa.Text, nullable=False, server_default="{}"),
            sa.Column("top_similarity", sa.Float),
            sa.Column("notice", sa.Text, nullable=False, server_default=""),
        )
        op.create_index("chats_course_created", "chats", ["course", "created"])
    if "feedback" not in existing:
        op.create_table(
            "feedback",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("chat_id", sa.Integer, sa.ForeignKey("chats.id"), nullable=False),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("session", sa.Text, nullable=False),
            sa.Column("rating", sa.Integer, sa.CheckConstraint("rating IN (-1, 1)"), nullable=False),
            sa.Column("category", sa.Text),
            sa.Column("comment", sa.Text, nullable=False, server_default=""),
        )
        op.create_index("feedback_chat", "feedback", ["chat_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("chats")
