"""Payment orders record the app id and front they were made with; refunds count their unknown attempts.

``payment_orders.app_id`` / ``front``: NULL for orders from before (their callbacks are checked against the
provider's app id, as before). ``payment_refunds.attempts`` / ``last_error``: how often the provider was asked
without a definite answer, and what went wrong last. The new refund states (unknown, abnormal) fit the
existing String(10) column. ``payment_orders.paid_at`` gets an index: daily reconciliation picks the day's
payments by the provider's paid time.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payment_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('app_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('front', sa.String(length=20), nullable=True))
        batch_op.create_index(batch_op.f('ix_payment_orders_paid_at'), ['paid_at'], unique=False)
    with op.batch_alter_table('payment_refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('payment_refunds', schema=None) as batch_op:
        batch_op.drop_column('last_error')
        batch_op.drop_column('attempts')
    with op.batch_alter_table('payment_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_orders_paid_at'))
        batch_op.drop_column('front')
        batch_op.drop_column('app_id')
