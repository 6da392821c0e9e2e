"""The web engine's configuration: one explicit object, no environment reads inside the app.

``adf serve`` builds it from ``ADF_*`` environment variables (:meth:`WebSettings.from_env`);
a host application builds it in code and passes it to :func:`~active_data_flow.web.create_app`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from active_data_flow.errors import ConfigurationError

__all__ = ["WebSettings"]


@dataclass(frozen=True, slots=True)
class WebSettings:
    """How the engine behaves.

    Attributes:
        heartbeat_token: the secret ``POST /heartbeat`` must present (``Authorization:
            Bearer <token>``). ``None``: the heartbeat route refuses every call (401).
        secret_key: signs the CSRF tokens of the HTML forms. Set it when several processes
            serve the same users (default: random per process, fine for one process).
        title: shown in the page header.
        page_size: rows per page in listings (the API takes ``limit`` up to 1000).
        overdue_grace_s: a flow whose run has been due this long unclaimed is overdue.
        heartbeat_stale_s: ``/health`` reports ``degraded`` when the last heartbeat is older.
        history_chart_runs: how many recent runs the flow page charts.
        trusted_origins: extra ``scheme://host[:port]`` origins allowed to post forms (the
            app's own origin always is); for hosts behind proxies that rewrite ``Host``.
        worker_id: the heartbeat worker id of this web process (default: host and pid).
        allowed_hosts: the host names the engine answers to (``Host`` header; patterns
            like ``*.example.com``, as Starlette's ``TrustedHostMiddleware`` takes them).
            Empty: any host (the host application checks it). ``adf serve`` defaults to
            the interface it listens on and the loopback names.
        max_body_bytes: the largest request body accepted (413 above).
        max_json_depth: how deeply a JSON body may nest (422 deeper).
        login_failures: failed logins (credentials presented and refused) a client may
            make within ``login_window_s`` before it is refused with 429.
        login_window_s: the window of ``login_failures``, and the longest wait.
        csrf_max_age_s: how long a form's CSRF token stays valid.
    """

    heartbeat_token: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    title: str = "ActiveDataFlow"
    page_size: int = 50
    overdue_grace_s: float = 60.0
    heartbeat_stale_s: float = 300.0
    history_chart_runs: int = 50
    trusted_origins: tuple[str, ...] = ()
    worker_id: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    login_failures: int = 10
    login_window_s: float = 60.0
    csrf_max_age_s: float = 12 * 3600.0

    def __post_init__(self) -> None:
        if self.heartbeat_token is not None and len(self.heartbeat_token) < 16:
            raise ConfigurationError(
                "heartbeat_token must be at least 16 characters (use e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
                option="heartbeat_token",
            )
        if len(self.secret_key) < 16:
            raise ConfigurationError("secret_key must be at least 16 characters",
                                     option="secret_key")
        if not 1 <= self.page_size <= 1000:
            raise ConfigurationError(f"page_size must be 1..1000, got {self.page_size}",
                                     option="page_size")
        if not 1 <= self.history_chart_runs <= 1000:
            raise ConfigurationError(
                f"history_chart_runs must be 1..1000, got {self.history_chart_runs}",
                option="history_chart_runs",
            )

        for option, low, high in (("max_body_bytes", 1024, 2**31), ("max_json_depth", 4, 256),
                                  ("login_failures", 1, 1_000_000),
                                  ("login_window_s", 1, 86_400),
                                  ("csrf_max_age_s", 60, 30 * 86_400)):
            value = getattr(self, option)
            if not low <= value <= high:
                raise ConfigurationError(f"{option} must be {low}..{high}, got {value!r}",
                                         option=option)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        """Settings from ``ADF_HEARTBEAT_TOKEN``, ``ADF_WEB_SECRET``, ``ADF_WEB_TITLE``,
        ``ADF_WEB_TRUSTED_ORIGINS`` and ``ADF_WEB_ALLOWED_HOSTS`` (comma-separated),
        ``ADF_WEB_MAX_BODY`` (bytes) and ``ADF_WEB_LOGIN_FAILURES``; unset ones keep their
        defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("ADF_HEARTBEAT_TOKEN"):
            values["heartbeat_token"] = env["ADF_HEARTBEAT_TOKEN"]
        if env.get("ADF_WEB_SECRET"):
            values["secret_key"] = env["ADF_WEB_SECRET"]
        if env.get("ADF_WEB_TITLE"):
            values["title"] = env["ADF_WEB_TITLE"]
        if env.get("ADF_WEB_TRUSTED_ORIGINS"):
            values["trusted_origins"] = tuple(
                o.strip().rstrip("/") for o in env["ADF_WEB_TRUSTED_ORIGINS"].split(",")
                if o.strip()
            )
        if env.get("ADF_WEB_ALLOWED_HOSTS"):
            values["allowed_hosts"] = tuple(
                h.strip() for h in env["ADF_WEB_ALLOWED_HOSTS"].split(",") if h.strip())
        for name, option in (("ADF_WEB_MAX_BODY", "max_body_bytes"),
                             ("ADF_WEB_LOGIN_FAILURES", "login_failures")):
            if env.get(name):
                try:
                    values[option] = int(env[name])
                except ValueError:
                    raise ConfigurationError(f"{name} must be a whole number, got "
                                             f"{env[name]!r}", option=option) from None
        return cls(**values)  # type: ignore[arg-type]
