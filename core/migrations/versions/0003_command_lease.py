"""Command leases (the running attempt's owner and until when it holds the command) and the time a
meter's remaining amount was read (what a prepaid-meter account shows).

Commands left running by a worker before this revision have no lease; the retry job frees them
by ``last_attempt_at`` as before.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import core.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meter_commands', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('lease_until', core.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remaining_read_at', core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_column('remaining_read_at')
    with op.batch_alter_table('meter_commands', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')
