"""The one masking rule (active_data_flow.masking): URL passwords, secret keys, log records."""

from __future__ import annotations

import logging
import sys
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_data_flow.masking import MASK, MaskingFilter, mask, mask_text, mask_url, unmask

SECRET_PW = "pg-Secret-77"

# URL parts that need no escaping (user names, hosts and databases in practice).
plain = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12)
schemes = st.sampled_from(["postgresql", "postgresql+psycopg", "mysql+pymysql", "mariadb",
                           "sqlite", "redis", "amqp"])
# What a log line or an error may put around a URL.
around = st.sampled_from(["", " ", "connecting to ", "'", '"', "(", ") ", ": refused", "\n"])


def test_masking_rules() -> None:
    assert mask_text("postgresql://u:p4ss@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert mask_text("host=db password=abc user=x") == "host=db password=*** user=x"
    assert mask_text("no secrets here: a@b.c") == "no secrets here: a@b.c"
    spec = {"config": {"password": "x", "api_key": "k", "token": 3, "name": "n",
                       "nested": [{"secret": "s"}], "passthrough": False}}
    masked = mask(spec)
    assert masked == {"config": {"password": MASK, "api_key": MASK, "token": MASK, "name": "n",
                                 "nested": [{"secret": MASK}], "passthrough": False}}
    assert unmask(masked, spec) == spec
    changed = {"config": {**masked["config"], "password": "new"}}
    assert unmask(changed, spec)["config"]["password"] == "new"


def test_the_logging_filter_masks_messages_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connect %s", (
        f"postgresql://u:{SECRET_PW}@h/db",), None)
    try:
        raise RuntimeError(f"failed: mysql://r:{SECRET_PW}@h/db")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    MaskingFilter().filter(record)
    assert SECRET_PW not in logging.Formatter().format(record)


@pytest.mark.parametrize(
    ("given_url", "shown"),
    [
        ("postgresql+psycopg://app:s3cret@db:5432/prod", "postgresql+psycopg://app:***@db:5432/prod"),
        # SQLAlchemy leaves spaces and quotes in a password as they are; mask_text stops there.
        ("postgresql://app:it's a secret@db/prod", "postgresql://app:***@db/prod"),
        ("mysql://app:pw@db/app?ssl_key=k&password=again", "mysql://app:***@db/app?ssl_key=k"
                                                           "&password=***"),
        ("postgresql://app@db/prod?password=s3cret", "postgresql://app@db/prod?password=***"),
        ("sqlite:///flows.db", "sqlite:///flows.db"),
        ("mysql+pymysql://root@127.0.0.1:3306/test", "mysql+pymysql://root@127.0.0.1:3306/test"),
        ("cannot reach postgresql://app:s3cret@db/prod", "cannot reach postgresql://app:***@db/prod"),
        ("", ""),
    ],
)
def test_mask_url_shows_a_url_with_its_password_masked(given_url: str, shown: str) -> None:
    assert mask_url(given_url) == shown


def test_mask_url_renders_url_objects_without_their_password() -> None:
    class URL:  # the duck type of sqlalchemy.engine.URL
        def render_as_string(self, hide_password: bool = True) -> str:
            return f"postgresql://app:{'***' if hide_password else SECRET_PW}@db/prod"

    assert mask_url(URL()) == "postgresql://app:***@db/prod"


@given(scheme=schemes, user=plain, password=st.text(min_size=1), host=plain, db=plain)
def test_a_percent_encoded_password_never_survives_mask_url(
    scheme: str, user: str, password: str, host: str, db: str
) -> None:
    url = f"{scheme}://{user}:{quote(password, safe='')}@{host}/{db}"
    assert mask_url(url) == f"{scheme}://{user}:{MASK}@{host}/{db}"


@given(scheme=schemes, user=plain, password=st.text(min_size=1).filter(lambda p: "@" not in p),
       host=plain, db=plain)
def test_a_raw_password_never_survives_mask_url(
    scheme: str, user: str, password: str, host: str, db: str
) -> None:
    # Unescaped, as a user may write it: SQLAlchemy reads the password up to the first "@".
    url = f"{scheme}://{user}:{password}@{host}/{db}"
    assert mask_url(url) == f"{scheme}://{user}:{MASK}@{host}/{db}"


@given(scheme=schemes, user=plain, password=st.text(min_size=1), host=plain, db=plain,
       before=around, after=around)
def test_a_percent_encoded_password_in_a_text_never_survives_mask_text(
    scheme: str, user: str, password: str, host: str, db: str, before: str, after: str
) -> None:
    text = f"{before}{scheme}://{user}:{quote(password, safe='')}@{host}/{db}{after}"
    masked = f"{before}{scheme}://{user}:{MASK}@{host}/{db}{after}"
    assert mask_text(text) == masked
    assert mask_url(text) == masked


@given(key=st.sampled_from(["password", "PASSWORD", "passwd", "pwd"]),
       value=st.text("abcdefghijklmnopqrstuvwxyz0123456789!#$%()*+,-./:<>?[]^_{|}~",
                     min_size=1),
       before=around, after=around)
def test_a_password_value_never_survives_mask_text(
    key: str, value: str, before: str, after: str
) -> None:
    text = f"{before}host=db {key}={value} user=x{after}"
    assert mask_text(text) == f"{before}host=db {key}={MASK} user=x{after}"
