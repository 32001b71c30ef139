"""API keys, the questions counted against quotas, and which key asked each logged question.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("course", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revoked", sa.Float),
    )
    op.create_table(
        "asked",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("student", sa.Text, nullable=False),
        sa.Column("course", sa.Text, nullable=False),
        sa.Column("api_key_id", sa.Integer),
        sa.Column("finished", sa.Float),
    )
    op.create_index("asked_student", "asked", ["student", "course", "created"])
    op.create_index("asked_key_running", "asked", ["api_key_id", "finished"])
    with op.batch_alter_table("chats") as chats:
        chats.add_column(sa.Column("api_key_id", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("chats") as chats:
        chats.drop_column("api_key_id")
    op.drop_table("asked")
    op.drop_table("api_keys")
