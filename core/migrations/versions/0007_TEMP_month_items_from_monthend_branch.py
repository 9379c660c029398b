"""TEMPORARY (bills branch only): month_items, as the monthend branch's model describes it.

The lead drops this file at merge and keeps the monthend branch's revision 0007; it exists only so
the bills branch's tests have the table that bill generation reads.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import core.db  # noqa: F401


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('month_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('site_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=60), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('period', sa.String(length=12), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('revenue_code', sa.String(length=80), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('bill_no', sa.String(length=40), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_month_items_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_month_items_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_month_items_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_month_items')),
    sa.UniqueConstraint('key', name=op.f('uq_month_items_key'))
    )
    with op.batch_alter_table('month_items', schema=None) as batch_op:
        batch_op.create_index('ix_month_items_account_period', ['account_id', 'period'], unique=False)
        batch_op.create_index(batch_op.f('ix_month_items_bill_no'), ['bill_no'], unique=False)
        batch_op.create_index('ix_month_items_site_period', ['site_id', 'period'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('month_items', schema=None) as batch_op:
        batch_op.drop_index('ix_month_items_site_period')
        batch_op.drop_index(batch_op.f('ix_month_items_bill_no'))
        batch_op.drop_index('ix_month_items_account_period')

    op.drop_table('month_items')
