"""Card history and feedback.

Revision ID: 0001
Revises:
Create Date: 2025-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cds_issued_card",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("hook", sa.String(100), nullable=False),
        sa.Column("hook_instance", sa.String(100), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("knowledge_version", sa.String(100), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cds_issued_card_issued_at", "cds_issued_card", ["issued_at"])
    op.create_index(
        "ix_cds_issued_card_patient_rule", "cds_issued_card", ["patient_key", "rule_id"]
    )
    op.create_table(
        "cds_card_feedback",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_at", sa.DateTime(), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("reason_system", sa.String(500), nullable=True),
        sa.Column("reason_code", sa.String(200), nullable=True),
        sa.Column("reason_display", sa.String(500), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("unknown_card", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("card_uuid", "outcome", "outcome_at", name="uq_cds_card_feedback_once"),
    )
    op.create_index("ix_cds_card_feedback_card_uuid", "cds_card_feedback", ["card_uuid"])


def downgrade() -> None:
    op.drop_table("cds_card_feedback")
    op.drop_table("cds_issued_card")
