"""Merge the area branches (alarms, billing, payments) into one line of history.

Revision ID: 0002
Revises: alarms_001, billing_001, payments_001
"""

revision = "0002"
down_revision = ("alarms_001", "billing_001", "payments_001")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
