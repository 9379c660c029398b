"""The migrations build exactly the schema the models describe."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import core.models  # noqa: F401
from core.db import Base, get_engine
from core.migrate import current_heads


def test_migrations_match_models():
    with get_engine().connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations disagree; add an Alembic revision: {diff}"


def test_history_has_one_head():
    heads = current_heads()
    assert len(heads) == 1, f"several migration heads {heads}: add a merge revision"
