"""The web engine: a FastAPI application to manage and monitor flows (``pip install
"active-data-flow[web]"``).

Mount it in a host application::

    from fastapi import FastAPI
    from active_data_flow.web import create_app, basic_auth

    host = FastAPI()
    host.mount("/active_data_flow", create_app(
        "postgresql+psycopg://app@db/app",
        auth=basic_auth("admin", os.environ["ADF_WEB_PASSWORD"]),
        heartbeat_token=os.environ["ADF_HEARTBEAT_TOKEN"],
    ))

or run it alone with ``adf serve``. See ``docs/web.md``.
"""

from __future__ import annotations

from active_data_flow.web.app import create_app
from active_data_flow.web.security import AuthHook, basic_auth
from active_data_flow.web.settings import WebSettings

__all__ = ["AuthHook", "WebSettings", "basic_auth", "create_app"]
