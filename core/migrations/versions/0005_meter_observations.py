"""The time each mirrored group of a meter was read (relay/valve, remaining amount and purchase
count, live values), so an older read never replaces a newer one, and since when the relay/valve
disagrees with the desired supply (core.supply.enforce).

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import core.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('supply_observed_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('prepaid_observed_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('live_observed_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('mismatch_since', core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_column('mismatch_since')
        batch_op.drop_column('live_observed_at')
        batch_op.drop_column('prepaid_observed_at')
        batch_op.drop_column('supply_observed_at')
