"""Alembic migrations of the flow store (branch label ``active_data_flow``).

``env.py`` and ``versions/`` ship inside the package; :meth:`FlowStore.upgrade` (and
``adf db upgrade``) apply them with the version table ``adf_alembic_version``.
"""
