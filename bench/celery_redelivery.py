"""How long a broker takes to redeliver the task of a worker killed with SIGKILL.

A plain Celery task (late acknowledgement, reject on worker lost) records its start and then
sleeps; the worker's whole process group is SIGKILLed once the task started, a replacement
worker is started at once, and the time until the task starts again is measured. Cases:

* Redis, visibility timeout 10 s, kombu's default sweep (``unacked_restore_interval`` 10 s,
  ``unacked_restore_throttle`` 10: Redis is scanned on every 10th sweep, so every ~100 s);
* Redis, visibility timeout 10 s, the Celery runtime's sweep (every 1 s, throttle 1);
* RabbitMQ (redelivers when the dead consumer's connection closes).

    python3 bench/celery_redelivery.py [--cases redis-default,redis-tuned,rabbitmq]

It explains the "~90 s with a 10 s visibility timeout" seen on Redis (docs/celery.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from celery import Celery  # type: ignore[import-untyped]

REDIS = os.environ.get("ADF_BENCH_REDIS", "redis://127.0.0.1:6379/8")
RABBITMQ = os.environ.get("ADF_BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
MARKS = Path(os.environ.get("REDELIVERY_MARKS", "/tmp/adf-redelivery-marks"))

# The worker imports this module (``-A celery_redelivery``): its app comes from the env.
app = Celery("redelivery", broker=os.environ.get("REDELIVERY_BROKER", REDIS),
             set_as_current=False)
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True,
                worker_prefetch_multiplier=1, task_ignore_result=True,
                worker_cancel_long_running_tasks_on_connection_loss=True,
                broker_connection_retry_on_startup=True)
if os.environ.get("REDELIVERY_OPTIONS"):
    interval, throttle = (float(x) for x in os.environ["REDELIVERY_OPTIONS"].split(","))
    app.conf.broker_transport_options = {"visibility_timeout": 10,
                                         "unacked_restore_interval": interval,
                                         "unacked_restore_throttle": int(throttle)}
elif os.environ.get("REDELIVERY_BROKER", REDIS).startswith("redis"):
    app.conf.broker_transport_options = {"visibility_timeout": 10}


@app.task(name="redelivery.sleepy", acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def sleepy(mark: str) -> None:
    """Record a start (one line per execution), then work for a while."""
    with (MARKS / mark).open("a") as f:
        f.write(f"{time.time()} {os.getpid()}\n")
    time.sleep(30)


def starts(mark: str) -> list[float]:
    path = MARKS / mark
    return [float(line.split()[0]) for line in path.read_text().splitlines()] if (
        path.exists()) else []


def worker(env: dict[str, str], queue: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_redelivery", "worker", "-Q", queue,
         "-c", "1", "-l", "WARNING", "--without-gossip", "--without-mingle",
         "-n", f"{uuid.uuid4().hex[:6]}@%h"],
        cwd=Path(__file__).parent, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(broker: str, options: str | None, limit: float) -> float | None:
    """Seconds from the SIGKILL to the task's second start (``None``: not within limit)."""
    queue, mark = f"redelivery_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    env = {**os.environ, "REDELIVERY_BROKER": broker, "REDELIVERY_MARKS": str(MARKS),
           "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("REDELIVERY_OPTIONS", None)
    if options:
        env["REDELIVERY_OPTIONS"] = options
    MARKS.mkdir(exist_ok=True)
    sender = Celery("sender", broker=broker, set_as_current=False)
    first = worker(env, queue)
    procs = [first]
    try:
        sender.send_task("redelivery.sleepy", args=(mark,), queue=queue)
        deadline = time.monotonic() + 60
        while not starts(mark):
            if time.monotonic() > deadline:
                raise SystemExit("the task never started")
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.time()
        first.wait()
        procs.append(worker(env, queue))
        deadline = time.monotonic() + limit
        while len(starts(mark)) < 2:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return starts(mark)[1] - killed
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        with sender.connection_for_write() as conn:
            if broker.startswith("amqp"):
                conn.default_channel.queue_delete(queue)
        (MARKS / mark).unlink(missing_ok=True)


CASES = {
    "redis-default": ("Redis, visibility 10 s, kombu default sweep (10 s x throttle 10)",
                      REDIS, None, 240.0),
    "redis-tuned": ("Redis, visibility 10 s, sweep every 1 s (throttle 1)", REDIS, "1,1", 60.0),
    "rabbitmq": ("RabbitMQ (connection closed by the kill)", RABBITMQ, None, 60.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    print(f"{'case':68}{'redelivered after':>18}")
    for key in args.cases.split(","):
        label, broker, options, limit = CASES[key]
        seconds = measure(broker, options, limit)
        shown = f"{seconds:.1f} s" if seconds is not None else f"> {limit:.0f} s"
        print(f"{label:68}{shown:>18}", flush=True)


if __name__ == "__main__":
    main()
