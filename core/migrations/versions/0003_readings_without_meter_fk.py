"""Readings: drop the foreign key to meters (the billing-state row guards it instead).

Readings are the one table that grows with every poll and import. PostgreSQL checks a foreign
key row by row (one lookup and a key-share lock per reading), which was a third of the database's
time in a bulk import. Integrity does not depend on it: readings are written only by billing
(core/billing/store.py), only for meters whose billing-state row it has created and locked in the
same transaction, and that row keeps its own foreign key to meters, so a meter with readings can
neither be missing nor be deleted.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.drop_constraint("fk_readings_meter_id_meters", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.create_foreign_key("fk_readings_meter_id_meters", "meters", ["meter_id"], ["id"])
