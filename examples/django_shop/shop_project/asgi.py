"""ASGI entry point: Django, with the ActiveDataFlow engine under /flows/ (staff only)."""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_project.settings")
django_app = ASGIStaticFilesHandler(get_asgi_application())  # the admin's CSS (DEBUG only)

from active_data_flow.contrib.django.asgi import with_engine  # noqa: E402  (after setup)

application = with_engine(django_app, prefix="/flows")
