"""ActiveDataFlow as a reusable Django app (extra ``[django]``, Django 4.2 LTS and 5.x).

::

    INSTALLED_APPS += ["active_data_flow.contrib.django"]
    ACTIVE_DATA_FLOW = {"DATABASE": "default"}          # optional: see conf.py

``manage.py migrate`` creates the flow store's tables on that database, ``manage.py adf``
runs every ``adf`` command with the project's flows (``<app>/data_flows.py``), the admin
shows flows, runs and dead letters, and :class:`DjangoSource` / :class:`DjangoSink` (type
``django``) read and write the project's models. See ``docs/django.md``.

Importing this package does not import Django; the connectors are in
``active_data_flow.contrib.django.connectors``.
"""
