"""The web engine under uvicorn, dying by SIGKILL right after its Nth inbox write committed
and before it answers (``python -m tests.acceptance.web.inbox_harness PORT [N]``).

The crash point is injected here, in test code: the stored push is wrapped so that the
process kills itself between the commit and the 202.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import uvicorn

from active_data_flow.runtimes.heartbeat.store import InboxReceipt
from active_data_flow.runtimes.heartbeat.store.inbox import SqlInbox
from active_data_flow.web import create_app


def arm(kill_after: int) -> None:
    """Make the ``kill_after``-th committed push the process's last act."""
    original = SqlInbox.push
    count = 0
    lock = threading.Lock()

    def push(self: SqlInbox, flow: str,
             records: Sequence[tuple[str | None, Mapping[str, Any]]]) -> InboxReceipt:
        nonlocal count
        receipt = original(self, flow, records)  # committed
        with lock:
            count += 1
            if count >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # before the answer is sent
        return receipt

    SqlInbox.push = push  # type: ignore[method-assign]


def main() -> None:
    port = int(sys.argv[1])
    if len(sys.argv) > 2 and int(sys.argv[2]) > 0:
        arm(int(sys.argv[2]))
    app = create_app(os.environ["ADF_DATABASE_URL"], insecure_no_auth=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
