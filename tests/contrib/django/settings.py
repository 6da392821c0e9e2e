"""Django settings of the test project: one alias per database kind.

``default`` is SQLite; ``postgresql`` and ``mariadb`` are the local servers. Each test
session uses databases of its own names (pytest-django creates ``test_<NAME>``), so agents
and CI runs sharing a server never meet.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pymysql

from tests.conftest import MARIADB_HOST, PG_HOST

pymysql.install_as_MySQLdb()  # Django's MySQL backend on PyMySQL (no C client needed)

_RUN = uuid.uuid4().hex[:10]
_FOLDER = Path(os.environ.get("ADF_DJANGO_TEST_DIR") or tempfile.mkdtemp(prefix="adf-dj-"))
_pg_host, _, _pg_port = PG_HOST.rpartition(":")
_my_host, _, _my_port = MARIADB_HOST.rpartition(":")

SECRET_KEY = "test-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.contrib.django.urls"
LOGIN_URL = "/admin/login/"
STATIC_URL = "/static/"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "active_data_flow.contrib.django",
    "tests.contrib.django.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_FOLDER / f"adf_{_RUN}.sqlite3"),
        "TEST": {"NAME": str(_FOLDER / f"test_adf_{_RUN}.sqlite3")},
    },
    "postgresql": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": f"adf_dj_{_RUN}", "USER": "postgres",
        "HOST": _pg_host, "PORT": _pg_port,
    },
    "mariadb": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": f"adf_dj_{_RUN}", "USER": "root",
        "HOST": _my_host, "PORT": _my_port,
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    },
}
# A process started by a test (manage.py adf ...) gets its default database as a URL.
if os.environ.get("ADF_DJANGO_DEFAULT_URL"):
    from sqlalchemy.engine import make_url

    _url = make_url(os.environ["ADF_DJANGO_DEFAULT_URL"])
    _backend = _url.get_backend_name()
    DATABASES = {"default": {
        "ENGINE": {"sqlite": "django.db.backends.sqlite3",
                   "postgresql": "django.db.backends.postgresql"}.get(
                       _backend, "django.db.backends.mysql"),
        "NAME": _url.database or "", "USER": _url.username or "",
        "PASSWORD": _url.password or "", "HOST": _url.host or "",
        "PORT": str(_url.port or ""),
        "OPTIONS": {"charset": "utf8mb4"} if _backend in ("mysql", "mariadb") else {},
    }}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ACTIVE_DATA_FLOW = {"DATABASE": "default", "MODELS": ["testapp.*"]}
