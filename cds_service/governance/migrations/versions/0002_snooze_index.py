"""Index for the snooze look-up: snoozing overrides are found first, then their cards.

Without it, SQLite answered the look-up by reading every card issued for the patient, a cost
that grew with each opening of the chart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_cds_card_feedback_snooze",
        "cds_card_feedback",
        ["outcome", "reason_system", "reason_code", "outcome_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_cds_card_feedback_snooze", table_name="cds_card_feedback")
