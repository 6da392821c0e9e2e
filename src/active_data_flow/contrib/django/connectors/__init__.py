"""The ``django`` connectors: :class:`DjangoSource` and :class:`DjangoSink`.

Importing this module needs configured Django settings (the app imports it when ready).
"""

from __future__ import annotations

from active_data_flow.contrib.django.connectors._handle import DjangoTransaction
from active_data_flow.contrib.django.connectors._models import register_models
from active_data_flow.contrib.django.connectors.sink import DjangoSink
from active_data_flow.contrib.django.connectors.source import DjangoSource

__all__ = ["DjangoSink", "DjangoSource", "DjangoTransaction", "register_models"]
