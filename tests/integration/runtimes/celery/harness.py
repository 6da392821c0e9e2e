"""Real Celery worker and scheduler processes for the Celery runtime's tests.

Every process is started in a process group of its own (``start_new_session``), so that a test
can kill a worker *with its pool children* in one ``os.killpg(pgid, SIGKILL)``, as a machine
failure would, and so that clean-up never leaves a straggler: :meth:`Cluster.close` SIGTERMs
every group still alive, waits briefly, then SIGKILLs it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[4]
ADF = str(Path(sys.executable).parent / "adf")
T = TypeVar("T")


@dataclass
class Broker:
    """A broker for one test: its kind, URL and a queue no other test uses."""

    kind: str
    url: str
    queue: str


@dataclass
class Proc:
    """A process group started by the harness, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pgid(self) -> int:
        return self.popen.pid  # a session leader's pid is its group id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group (the worker and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)


@dataclass
class Cluster:
    """Starts worker and scheduler processes for one test against one broker and store."""

    broker: Broker
    store_url: str
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    worker_options: tuple[str, ...] = ()
    procs: list[Proc] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_TEST_CRASH")}
        env.update({
            "ADF_CELERY_BROKER_URL": self.broker.url,
            "ADF_DATABASE_URL": self.store_url,
            "ADF_FLOWS": "tests.integration.runtimes.celery.flows",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str | None = None, *, concurrency: int = 1, wait: bool = True,
        options: tuple[str, ...] = (), env: dict[str, str] | None = None,
    ) -> Proc:
        """Start ``adf celery-worker`` consuming the test's queue; wait until it is ready."""
        name = name or f"w{len(self.procs)}-{uuid.uuid4().hex[:4]}"
        argv = [ADF, "celery-worker", "-Q", self.broker.queue, "-c", str(concurrency),
                "-n", f"{name}@%h", "-l", "INFO", *self.worker_options, *options]
        proc = self._spawn(name, argv, {**self.base_env(), **(env or {})})
        if wait:
            wait_for(lambda: " ready." in proc.output() or not proc.alive(), 60,
                     f"worker {name} to be ready")
            if not proc.alive():
                raise AssertionError(f"worker {name} exited:\n{proc.output()[-3000:]}")
        return proc

    def scheduler(self, name: str, *, interval: float = 0.5) -> Proc:
        """Start a heartbeat loop (a Worker beating every ``interval`` s) that dispatches."""
        code = ("import sys; from tests.integration.runtimes.celery.flows import run_scheduler; "
                f"run_scheduler({interval!r})")
        return self._spawn(name, [sys.executable, "-c", code], self.base_env())

    def close(self) -> None:
        """Stop every process still running: SIGTERM, then SIGKILL after 5 s."""
        for proc in self.procs:
            if proc.alive():
                proc.kill(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill(signal.SIGKILL)
                proc.popen.wait(5)
            # Pool children orphaned by a SIGTERMed parent are in the same group.
            proc.kill(signal.SIGKILL)

    def logs(self) -> str:
        """Every process's output, for assertion messages."""
        return "\n".join(f"===== {p.name}\n{p.output()[-4000:]}" for p in self.procs)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
