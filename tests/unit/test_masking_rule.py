"""The one masking rule, property-tested on the gaps issue 12 found (``"password": "x"``,
``token=abc``, ``PGPASSWORD=abc``, ``app:p@ss@db``, cursors and dead letters holding ``pwd``
or ``Authorization: Bearer ...``), and the log filter that escapes control characters."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from active_data_flow.masking import MASK, MaskingFilter, escape_control, mask, mask_text

# Secrets as people write them: letters, digits and the punctuation passwords hold.
secrets_ = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%^*()_+-.~",
                   min_size=1, max_size=24)
# In a URL, "#", "?" and "/" end the authority unless percent-encoded (test_masking.py).
url_secrets = st.text("abcdefghijklmnopqrstuvwxyz0123456789!$%^*()_+-.~@", min_size=1,
                      max_size=24).filter(lambda s: not s.startswith("@") and "@@" not in s)
keys = st.sampled_from(["password", "PASSWORD", "passwd", "pwd", "PGPASSWORD", "db_password",
                        "token", "api_key", "API-KEY", "secret", "client_secret",
                        "private_key", "credential", "access_token"])
around = st.sampled_from(["", " ", "error: ", "cursor ", "(", "\n", "got {", "; next"])

TEMPLATES = [
    '{k}={v}', '{k} = {v}', '{k}: {v}', '"{k}": "{v}"', "'{k}': '{v}'", '"{k}":"{v}"',
    '{{"{k}": "{v}", "id": 1}}', "{{'{k}': '{v}', 'id': 1}}",
]


@given(key=keys, value=secrets_, template=st.sampled_from(TEMPLATES), before=around,
       after=st.sampled_from(["", " and more", "\n", "; x"]))
def test_a_secret_value_never_survives_in_any_written_form(
    key: str, value: str, template: str, before: str, after: str
) -> None:
    text = before + template.format(k=key, v=value) + after
    masked = mask_text(text)
    assert masked == before + template.format(k=key, v=MASK) + after
    assert mask_text(masked) == masked  # masking twice changes nothing


@given(user=st.sampled_from(["app", "root", "svc_1"]), password=url_secrets,
       host=st.sampled_from(["db", "db.internal", "10.0.0.7"]),
       scheme=st.sampled_from(["", "postgresql://", "mysql+pymysql://", "redis://"]),
       tail=st.sampled_from(["", "/prod", ":5432/prod", " failed"]))
def test_a_url_password_is_masked_whole_even_with_an_at_sign(
    user: str, password: str, host: str, scheme: str, tail: str
) -> None:
    masked = mask_text(f"connect {scheme}{user}:{password}@{host}{tail}")
    assert masked == f"connect {scheme}{user}:{MASK}@{host}{tail}"


def test_the_cases_of_the_issue() -> None:
    assert mask_text('"password": "x"') == f'"password": "{MASK}"'
    assert mask_text("token=abc") == f"token={MASK}"
    assert mask_text("PGPASSWORD=abc") == f"PGPASSWORD={MASK}"
    assert mask_text("app:p@ss@db") == f"app:{MASK}@db"
    assert "abc.def" not in mask_text("Authorization: Bearer abc.def")
    assert "ZGVhZGJlZWY=" not in mask_text("authorization: Basic ZGVhZGJlZWY=")


# Bearer tokens are token68 (RFC 7235): letters, digits and -._~+/ then = padding.
tokens = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/",
                 min_size=1, max_size=40)


@given(value=tokens)
def test_cursors_and_dead_letters_hold_no_secret_once_masked(value: str) -> None:
    letter = {"message": {"pwd": value, "headers": {"Authorization": f"Bearer {value}"},
                          "note": f"Authorization: Bearer {value}"},
              "cursor": {"password": value}, "error": f"bad cursor {{'password': '{value}'}}"}
    masked = mask(letter)
    assert masked["message"]["pwd"] == MASK
    assert masked["message"]["headers"]["Authorization"] == MASK
    assert masked["cursor"]["password"] == MASK
    assert masked["message"]["note"] == f"Authorization: {MASK} {MASK}"
    assert masked["error"] == f"bad cursor {{'password': '{MASK}'}}"


@given(text=st.text("xyz0123456789 ,.-_()[]", max_size=60))
def test_text_without_secrets_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


@given(value=st.text(max_size=40))
def test_escaped_values_hold_no_control_character(value: str) -> None:
    escaped = escape_control(value)
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in escaped
               if c not in "\u2028\u2029")
    assert "\u2028" not in escaped


@given(value=st.text(max_size=40))
def test_a_logged_value_cannot_start_a_line(value: str) -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "POST %s: refused",
                               (f"/api/flows{value}\r\nFORGED",), None)
    MaskingFilter().filter(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert line.startswith("WARNING POST /api/flows")


def test_the_filter_keeps_uvicorns_access_log_arguments() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/x\r\nFORGED", "1.1", 200), None)
    MaskingFilter().filter(record)
    assert isinstance(record.args, tuple)
    assert record.args[2] == "/x\\r\\nFORGED"
    assert record.getMessage() == '127.0.0.1:5 - "GET /x\\r\\nFORGED HTTP/1.1" 200'
