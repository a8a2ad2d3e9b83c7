"""Alembic migrations of central's database (run by ``rae-central migrate``)."""
