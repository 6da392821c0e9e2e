"""The shop's URLs: the admin (the flow engine is mounted in asgi.py, under /flows/)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
