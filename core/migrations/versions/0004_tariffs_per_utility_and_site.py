"""Tariffs per utility and per site (issue 17 items 1 and 8).

- ``accounts.tariff_plan_id`` (one plan for every meter, so water was priced per "kWh") becomes
  ``electricity_plan_id`` and ``water_plan_id``; the same on ``account_presets``.
- ``tariff_plans.site_id``: a plan belongs to a site, or (NULL) is a shared template a site copies.
  Names are unique per site (``uq_tariff_plans_site_id_name``) instead of globally.
- ``meters.tariff_plan_id``: a meter's own plan while it is on no account (a master meter).
- ``billed_usage.plan_id``: the plan that priced an interval (NULL: unpriced, or before 0004).

Data, without guessing and without changing any price:

- a plan used by the accounts and presets of one site becomes that site's plan; a plan used at
  several sites, or by a preset of every site, stays a template and each using site gets a copy
  (same name, kind, unit and every dated version verbatim) that its accounts and presets point to;
  an unused plan stays a template;
- an account's (or preset's) plan becomes its electricity plan when priced in kWh, its water plan
  when priced in m3;
- every active meter of an open account whose kind does not fit the old plan's unit (the water
  meters of a kWh plan) gets no plan: it is unpriced (its readings wait, nothing is billed at the
  wrong price), a ``tariff_unit_mismatch`` meter event says which plan it had, and
  ``meterpay sites check`` lists it until a manager assigns a plan of the right unit.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import core.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTILITY_UNIT = {"electricity": "kWh", "water": "m3"}

plans = sa.table("tariff_plans", sa.column("id", ID), sa.column("site_id", ID), sa.column("name", sa.String),
                 sa.column("kind", sa.String), sa.column("unit", sa.String),
                 sa.column("created_at", core.db.UTCDateTime()))
accounts = sa.table("accounts", sa.column("id", ID), sa.column("site_id", ID), sa.column("status", sa.String),
                    sa.column("tariff_plan_id", ID), sa.column("electricity_plan_id", ID),
                    sa.column("water_plan_id", ID))
presets = sa.table("account_presets", sa.column("id", ID), sa.column("site_id", ID), sa.column("tariff_plan_id", ID),
                   sa.column("electricity_plan_id", ID), sa.column("water_plan_id", ID))
meters = sa.table("meters", sa.column("id", ID), sa.column("account_id", ID), sa.column("kind", sa.String),
                  sa.column("status", sa.String))
events = sa.table("meter_events", sa.column("meter_id", ID), sa.column("kind", sa.String),
                  sa.column("at", core.db.UTCDateTime()), sa.column("detail", sa.JSON),
                  sa.column("acknowledged", sa.Boolean))


def upgrade() -> None:
    with op.batch_alter_table('tariff_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site_id', ID, nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_tariff_plans_name'), type_='unique')
        batch_op.create_index(batch_op.f('ix_tariff_plans_site_id'), ['site_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_tariff_plans_site_id_name'), ['site_id', 'name'])
        batch_op.create_foreign_key(batch_op.f('fk_tariff_plans_site_id_sites'), 'sites', ['site_id'], ['id'])
    for table in ('accounts', 'account_presets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('electricity_plan_id', ID, nullable=True))
            batch_op.add_column(sa.Column('water_plan_id', ID, nullable=True))
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_electricity_plan_id_tariff_plans'), 'tariff_plans',
                                        ['electricity_plan_id'], ['id'])
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_water_plan_id_tariff_plans'), 'tariff_plans',
                                        ['water_plan_id'], ['id'])
    with op.batch_alter_table('billed_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_id', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tariff_plan_id', ID, nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_meters_tariff_plan_id_tariff_plans'), 'tariff_plans',
                                    ['tariff_plan_id'], ['id'])

    conn = op.get_bind()
    _plans_to_sites(conn)
    _split_by_unit(conn)
    _flag_wrong_units(conn)

    for table in ('accounts', 'account_presets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_tariff_plan_id_tariff_plans'), type_='foreignkey')
            batch_op.drop_column('tariff_plan_id')


def _plans_to_sites(conn) -> None:
    """Each plan to the one site using it, or a template with a copy per using site."""
    users: dict[int, set] = {}
    for plan_id, site_id in conn.execute(sa.select(accounts.c.tariff_plan_id, accounts.c.site_id)
                                         .where(accounts.c.tariff_plan_id.is_not(None)).distinct()):
        users.setdefault(plan_id, set()).add(site_id)
    for plan_id, site_id in conn.execute(sa.select(presets.c.tariff_plan_id, presets.c.site_id)
                                         .where(presets.c.tariff_plan_id.is_not(None)).distinct()):
        users.setdefault(plan_id, set()).add(site_id)  # None: a preset every site sees
    for plan_id in sorted(users):
        sites = users[plan_id]
        if len(sites) == 1 and None not in sites:
            conn.execute(plans.update().where(plans.c.id == plan_id).values(site_id=next(iter(sites))))
            continue
        plan = conn.execute(sa.select(plans).where(plans.c.id == plan_id)).one()
        for site_id in sorted(s for s in sites if s is not None):
            copy_id = conn.execute(plans.insert().values(site_id=site_id, name=plan.name, kind=plan.kind,
                                                         unit=plan.unit, created_at=plan.created_at)
                                   .returning(plans.c.id)).scalar_one()
            conn.execute(sa.text("INSERT INTO tariff_versions (plan_id, effective_from, spec, created_at) "
                                 "SELECT :copy, effective_from, spec, created_at FROM tariff_versions "
                                 "WHERE plan_id = :plan ORDER BY effective_from"), {"copy": copy_id, "plan": plan_id})
            for table in (accounts, presets):
                conn.execute(table.update().where(table.c.tariff_plan_id == plan_id, table.c.site_id == site_id)
                             .values(tariff_plan_id=copy_id))


def _split_by_unit(conn) -> None:
    for table in (accounts, presets):
        for column, unit in (("electricity_plan_id", "kWh"), ("water_plan_id", "m3")):
            of_unit = sa.select(plans.c.id).where(plans.c.unit == unit)
            conn.execute(table.update().where(table.c.tariff_plan_id.in_(of_unit))
                         .values({column: table.c.tariff_plan_id}))


def _flag_wrong_units(conn) -> None:
    wrong = sa.or_(*[sa.and_(meters.c.kind == kind, plans.c.unit != unit) for kind, unit in UTILITY_UNIT.items()])
    rows = conn.execute(sa.select(meters.c.id, plans.c.name, plans.c.unit)
                        .join(accounts, accounts.c.id == meters.c.account_id)
                        .join(plans, plans.c.id == accounts.c.tariff_plan_id)
                        .where(accounts.c.status == "open", meters.c.status == "active", wrong)
                        .order_by(meters.c.id)).all()
    if rows:
        now = core.db.utcnow()
        conn.execute(events.insert(), [
            {"meter_id": mid, "kind": "tariff_unit_mismatch", "at": now, "acknowledged": False,
             "detail": {"plan": name, "unit": unit, "by": "migration 0004"}} for mid, name, unit in rows])


def downgrade() -> None:
    """Best effort: one plan per account again (electricity's, else water's); refused while two
    plans share a name (site copies of a template, or plans of two sites)."""
    conn = op.get_bind()
    dup = conn.execute(sa.select(plans.c.name).group_by(plans.c.name).having(sa.func.count() > 1)).first()
    if dup is not None:
        raise RuntimeError(f"cannot downgrade below 0004: several tariff plans are named {dup[0]!r} "
                           "(plans of different sites, or site copies of a template); rename them first")
    for table in ('accounts', 'account_presets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('tariff_plan_id', ID, nullable=True))
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_tariff_plan_id_tariff_plans'), 'tariff_plans',
                                        ['tariff_plan_id'], ['id'])
    for table in (accounts, presets):
        conn.execute(table.update().values(
            tariff_plan_id=sa.func.coalesce(table.c.electricity_plan_id, table.c.water_plan_id)))
    for table in ('accounts', 'account_presets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_water_plan_id_tariff_plans'), type_='foreignkey')
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_electricity_plan_id_tariff_plans'), type_='foreignkey')
            batch_op.drop_column('water_plan_id')
            batch_op.drop_column('electricity_plan_id')
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_meters_tariff_plan_id_tariff_plans'), type_='foreignkey')
        batch_op.drop_column('tariff_plan_id')
    with op.batch_alter_table('billed_usage', schema=None) as batch_op:
        batch_op.drop_column('plan_id')
    with op.batch_alter_table('tariff_plans', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tariff_plans_site_id_sites'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_tariff_plans_site_id_name'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_tariff_plans_site_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_tariff_plans_name'), ['name'])
        batch_op.drop_column('site_id')
