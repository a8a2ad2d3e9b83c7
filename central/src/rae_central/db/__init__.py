"""Central's PostgreSQL database.

Modules:
- ``models``: the tables (SQLAlchemy 2 declarative), every one keyed by ``tenant_id``;
- ``migrate``: running the Alembic migrations and the schema-compatibility check;
- ``engine``: creating engines with the settings central relies on.
"""
