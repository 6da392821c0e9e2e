"""The test project's ASGI application: Django, with the web engine under ``/flows``."""

from django.core.asgi import get_asgi_application

from active_data_flow.contrib.django.asgi import with_engine

application = with_engine(get_asgi_application(), prefix="/flows")
