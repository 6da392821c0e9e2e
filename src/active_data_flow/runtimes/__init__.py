"""Runtimes: inline (core), heartbeat (store + scheduler) and celery (distributed).

Only :mod:`~active_data_flow.runtimes.inline` belongs to the core; the others live behind
their extras and are imported from their own subpackages.
"""
