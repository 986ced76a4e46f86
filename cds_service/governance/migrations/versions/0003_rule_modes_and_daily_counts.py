"""Rule modes and the governance console's daily counts (issue 26).

Backward compatible: the card history gains a `mode` column that defaults to "live" (every
card recorded before was shown) and a nullable `all_live_answer`, so code of the previous
release still writes and reads it; feedback gains nullable copies of its card's rule,
indicator and issue time (filled for the feedback already there); two new tables hold daily
counts, the cards' filled from the history already there. Calls were not counted before:
days before this migration have no denominators (the console says so rather than guess).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cds_issued_card") as table:
        table.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="live"))
        table.add_column(sa.Column("all_live_answer", sa.String(2000), nullable=True))
    op.create_index(
        "ix_cds_issued_card_governance",
        "cds_issued_card",
        ["rule_id", "mode", "patient_key", "issued_at", "service_id"],
    )
    with op.batch_alter_table("cds_card_feedback") as table:
        table.add_column(sa.Column("rule_id", sa.String(100), nullable=True))
        table.add_column(sa.Column("card_indicator", sa.String(16), nullable=True))
        table.add_column(sa.Column("card_issued_at", sa.DateTime(), nullable=True))
    for column, source in (
        ("rule_id", "rule_id"),
        ("card_indicator", "indicator"),
        ("card_issued_at", "issued_at"),
    ):
        op.execute(
            f"UPDATE cds_card_feedback SET {column} = (SELECT c.{source} FROM cds_issued_card c "
            "WHERE c.card_uuid = cds_card_feedback.card_uuid)"
        )
    op.create_index("ix_cds_card_feedback_card_issued_at", "cds_card_feedback", ["card_issued_at"])
    op.create_table(
        "cds_daily_outcomes",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("service_id", sa.String(200), primary_key=True),
        sa.Column("rule_id", sa.String(100), primary_key=True),
        sa.Column("indicator", sa.String(16), primary_key=True),
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("reason_system", sa.String(500), primary_key=True),
        sa.Column("reason_code", sa.String(200), primary_key=True),
        sa.Column("cards", sa.BigInteger(), nullable=False),
    )
    # Each known card once, with its latest feedback (governance/outcomes.py keeps it so).
    op.execute(
        "INSERT INTO cds_daily_outcomes (day, service_id, rule_id, indicator, outcome, "
        "reason_system, reason_code, cards) "
        "SELECT date(card_issued_at), service_id, rule_id, card_indicator, outcome, "
        "COALESCE(reason_system, ''), COALESCE(reason_code, ''), COUNT(*) FROM ("
        "SELECT *, row_number() OVER (PARTITION BY card_uuid "
        "ORDER BY received_at DESC, id DESC) AS latest "
        "FROM cds_card_feedback WHERE rule_id IS NOT NULL) AS ranked WHERE latest = 1 "
        "GROUP BY date(card_issued_at), service_id, rule_id, card_indicator, outcome, "
        "COALESCE(reason_system, ''), COALESCE(reason_code, '')"
    )
    op.create_table(
        "cds_daily_calls",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("service_id", sa.String(200), primary_key=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("in_scope_calls", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "cds_daily_cards",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("service_id", sa.String(200), primary_key=True),
        sa.Column("rule_id", sa.String(100), primary_key=True),
        sa.Column("mode", sa.String(8), primary_key=True),
        sa.Column("knowledge_version", sa.String(100), primary_key=True),
        sa.Column("cards", sa.BigInteger(), nullable=False),
    )
    # date() reads a timestamp on both SQLite and PostgreSQL.
    op.execute(
        "INSERT INTO cds_daily_cards (day, service_id, rule_id, mode, knowledge_version, cards) "
        "SELECT date(issued_at), service_id, rule_id, mode, knowledge_version, COUNT(*) "
        "FROM cds_issued_card "
        "GROUP BY date(issued_at), service_id, rule_id, mode, knowledge_version"
    )


def downgrade() -> None:
    op.drop_table("cds_daily_outcomes")
    op.drop_index("ix_cds_card_feedback_card_issued_at", table_name="cds_card_feedback")
    with op.batch_alter_table("cds_card_feedback") as table:
        for column in ("card_issued_at", "card_indicator", "rule_id"):
            table.drop_column(column)
    op.drop_table("cds_daily_cards")
    op.drop_table("cds_daily_calls")
    op.drop_index("ix_cds_issued_card_governance", table_name="cds_issued_card")
    with op.batch_alter_table("cds_issued_card") as table:
        table.drop_column("all_live_answer")
        table.drop_column("mode")
