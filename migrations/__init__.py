"""Cesar's Alembic migrations.

Installed as the package ``cesar_common.db.migrations`` (see ``cesar_common.db.migrate``); ``alembic upgrade
head`` in a checkout reads them here through ``alembic.ini``.
"""
