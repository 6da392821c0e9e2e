"""A new user's first hour (issue 11), through the user's doors: a temporary application
with its own package, set up by ``adf init`` on a fresh PostgreSQL database, driven by ``adf``
subprocesses.

``project`` is the application folder::

    shop/
      adf.toml            written by `adf init --database <a fresh PostgreSQL database>`
      data_flows/         written by `adf init` (with its hello_flow example)
      myapp/__init__.py
      myapp/models.py     the application's models: Order, OrderCopy (tables created)

``project.adf(*args)`` runs ``adf`` in it (a new process, like a user's shell: no ADF_*
setting but those of adf.toml, no PYTHONPATH); ``project.flow(name, text)`` writes a flow
file; ``project.sql(statement)`` runs SQL on the application's database.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

MODELS = textwrap.dedent('''
    """The application's models."""
    from datetime import datetime

    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class Order(Base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        updated_at: Mapped[datetime]
        amount: Mapped[int]


    class OrderCopy(Base):
        __tablename__ = "order_copies"
        id: Mapped[int] = mapped_column(primary_key=True)
        updated_at: Mapped[datetime]
        amount: Mapped[int]
''')

#: The installed ``adf`` command of this environment.
ADF = str(Path(sys.executable).with_name("adf"))

#: The settings a user's shell would not have: each command reads adf.toml instead.
_SETTINGS = ("ADF_DATABASE_URL", "ADF_FLOWS", "ADF_CONFIG", "ADF_HEARTBEAT_TOKEN",
             "ADF_LEASE_SECONDS", "ADF_STORE_CONNECT_TIMEOUT", "PYTHONPATH")


@dataclass
class Project:
    """A temporary application folder and the ``adf`` command run in it."""

    root: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def flows(self) -> Path:
        return self.root / "data_flows"

    def command(self, *args: str) -> list[str]:
        """The argv of ``adf ARGS``: the ``adf`` script installed next to this interpreter,
        as a user runs it (``python -m`` would make the working directory importable, and
        hide whether the command does)."""
        return [ADF, *args]

    def environment(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def adf(self, *args: str, cwd: Path | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``adf ARGS`` in the project folder (or ``cwd``) and wait for it."""
        return subprocess.run(self.command(*args), cwd=cwd or self.root,
                              env=self.environment(**env), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start ``adf ARGS`` in the project folder (stdout and stderr merged)."""
        return subprocess.Popen(self.command(*args), cwd=self.root,
                                env=self.environment(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def flow(self, module: str, text: str) -> Path:
        """Write ``data_flows/<module>.py``."""
        path = self.flows / f"{module}.py"
        path.write_text(textwrap.dedent(text))
        return path

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run SQL on the application's (and store's) database; the rows, if any."""
        engine = sa.create_engine(self.database_url, poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()


def user_environment() -> dict[str, str]:
    """This process's environment without the ADF settings and PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def project(tmp_path: Path, postgres_url: str) -> Project:
    """An application ``shop`` with its package ``myapp`` (models Order and OrderCopy, their
    tables created in a fresh PostgreSQL database), set up with ``adf init`` on that
    database."""
    root = tmp_path / "shop"
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "models.py").write_text(MODELS)
    app = Project(root=root, database_url=postgres_url, env=user_environment())
    init = app.adf("init", "--database", postgres_url)
    assert init.returncode == 0, init.stdout + init.stderr
    app.sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, updated_at TIMESTAMP NOT NULL, "
            "amount INTEGER NOT NULL)")
    app.sql("CREATE TABLE order_copies (id INTEGER PRIMARY KEY, updated_at TIMESTAMP "
            "NOT NULL, amount INTEGER NOT NULL)")
    return app


def error_lines(output: str) -> list[str]:
    """The lines of ``output`` that report an error (``Error: ...``)."""
    return [line for line in output.splitlines() if line.startswith("Error: ")]


# -- a TCP proxy: a database that goes away and comes back ------------------------------
class Proxy:
    """A TCP proxy on a free port of 127.0.0.1 in front of ``target`` (host, port).

    :meth:`cut` closes the listening socket and every open connection (the database is
    down: connecting is refused, open connections break); :meth:`restore` listens again
    on the same port.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            sockets, self._sockets = self._sockets, []
        for sock in ([server] if server else []) + sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A port of 127.0.0.1 nothing listens on (connecting is refused)."""
    return _free_port()


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[Proxy]:
    """A proxy in front of the test PostgreSQL server (see :class:`Proxy`)."""
    url = sa.make_url(postgres_url)
    p = Proxy((url.host or "127.0.0.1", url.port or 5432))
    yield p
    p.cut()
