"""The database adapter: SQLAlchemy Core tables, repositories and the unit of work."""

from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.db.unit_of_work import SqlUnitOfWork, UnitOfWorkFactory

__all__ = ["SqlUnitOfWork", "UnitOfWorkFactory", "create_db_engine", "migrate"]
