"""The heartbeat engine: what runs stored flows (beats, workers, the one executor).

The layers of :mod:`active_data_flow.runtimes.heartbeat`, bottom up: ``runtime`` (the
options), ``schedule``, ``store`` (data access only), ``engine`` (this package: the executor,
the code flow of a stored flow, leases, beats, the worker loop, dead letters).
"""
