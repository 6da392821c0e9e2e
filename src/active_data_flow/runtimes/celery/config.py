"""The Celery runtime's options (a module of its own: the tasks read them without importing
the runtime class, which enqueues through them)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from active_data_flow.runtimes.heartbeat.runtime import HeartbeatConfig

__all__ = ["CeleryConfig"]

_NAME = r"^[A-Za-z0-9_.:\-]{1,200}$"


class CeleryConfig(HeartbeatConfig):
    """Options of the Celery runtime (besides the heartbeat's schedule and retries).

    Attributes:
        queue: the Celery queue the flow's tasks go to (default: the app's default queue,
            ``active_data_flow``); start workers with ``-Q`` to dedicate them.
        priority: 0-9, higher runs first among tasks waiting in the same queue.
        partitions: how many parts the flow's source is split into, each a task of its own
            (a source that cannot split runs as one part).
        concurrency: at most this many tasks of the flow execute at once, across all
            workers (``None``: as many as there are parts and free workers).
        concurrency_group: a name shared by flows that together may run at most
            ``group_concurrency`` tasks at once (e.g. flows writing to one database).
        group_concurrency: the limit of ``concurrency_group``.
        queue_timeout: seconds a dispatched run may wait for workers without any of its
            parts making progress before the heartbeat declares it lost and recovers it.
        max_attempts: executions of one part before a transient failure fails it (and the
            run); other parts are not re-run.
    """

    queue: str | None = Field(default=None, pattern=_NAME)
    priority: int = Field(default=5, ge=0, le=9)
    partitions: int = Field(default=1, ge=1, le=1024)
    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    concurrency_group: str | None = Field(default=None, pattern=_NAME)
    group_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    queue_timeout: float = Field(default=3600.0, gt=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _group_has_a_limit(self) -> Self:
        if (self.concurrency_group is None) != (self.group_concurrency is None):
            missing = "group_concurrency" if self.group_concurrency is None else (
                "concurrency_group")
            raise ValueError(f"concurrency_group and group_concurrency go together; set "
                             f"{missing} too")
        return self

