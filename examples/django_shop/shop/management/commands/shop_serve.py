"""``manage.py shop_serve``: the site (admin + engine) and a flow worker, until Ctrl-C."""

import subprocess
import sys

import uvicorn
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the admin and /flows/ on 127.0.0.1 and run `manage.py adf worker` beside."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: object, port: int = 8000, **options: object) -> None:
        worker = subprocess.Popen([sys.executable, sys.argv[0], "adf", "worker"])
        self.stdout.write(f"http://127.0.0.1:{port}/admin/ and /flows/ (admin / admin)")
        try:
            uvicorn.run("shop_project.asgi:application", host="127.0.0.1", port=port,
                        log_level="warning")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
