#!/usr/bin/env python3
"""Developer entry point: needs only Python 3.11+ and pip.

    python3 dev.py demo          create .venv, install, run the demo
    python3 dev.py test [ARGS]   create .venv, install, run the whole test suite (pytest ARGS)
    python3 dev.py lint          ruff and mypy
    python3 dev.py bench NAME    run bench/NAME.py in the project's environment

The virtual environment lives in ``.venv`` and is reinstalled only when ``pyproject.toml``
changes. Under ``CI=true`` the test run requires every service (a missing PostgreSQL,
MariaDB, Redis, RabbitMQ or Chromium fails the tests instead of skipping them) and starts
the local services that are installed but stopped.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Services the test suite talks to, and how this machine kind starts each one.
SERVICES = {
    "PostgreSQL": ("127.0.0.1", 5432,
                   "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
    "MariaDB": ("127.0.0.1", 3306,
                "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"),
    "Redis": ("127.0.0.1", 6379,
              "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
              "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"),
    "RabbitMQ": ("127.0.0.1", 5672, "rabbitmq-server -detached"),
}


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def run(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if check and result.returncode != 0:
        sys.exit(result.returncode)
    return result.returncode


def ensure_venv(*groups: str) -> None:
    """Create .venv and install the package with every extra, plus dependency groups."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [r for g in groups for r in project["dependency-groups"][g]]
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + "\n".join(requirements).encode()
        + (ROOT / "examples" / "adf_plugin_example" / "pyproject.toml").read_bytes()
    ).hexdigest()
    stamp = VENV / ".adf-installed"
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        say("creating .venv")
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(VENV)
    say("installing active-data-flow[all]" + (f" and {', '.join(groups)} tools" if groups else ""))
    run(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}[all]", *requirements)
    stamp.write_text(digest)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_services() -> None:
    """Start the local services that are installed but not answering (best effort)."""
    import time

    for name, (host, port, command) in SERVICES.items():
        if reachable(host, port):
            continue
        say(f"{name} is not answering on {host}:{port}; starting it")
        subprocess.run(command, shell=True, check=False)
        for _ in range(60):
            if reachable(host, port):
                break
            time.sleep(0.5)
        else:
            print(f"    {name} did not start; its tests will fail", flush=True)


def cmd_demo(args: list[str]) -> int:
    ensure_venv()
    return run(PY, ROOT / "examples" / "demo" / "demo.py", *args, check=False)


def cmd_test(args: list[str]) -> int:
    ensure_venv("test", "lint")
    env = dict(os.environ)
    if CI:
        env["ADF_REQUIRE_SERVICES"] = "1"
        start_services()
    say("running the test suite")
    return run(PY, "-m", "pytest", *args, check=False, env=env)


def cmd_lint(args: list[str]) -> int:
    ensure_venv("test", "lint")
    say("ruff")
    status = run(BIN / "ruff", "check", "src", "tests", "bench", "examples", "dev.py",
                 check=False)
    say("mypy")
    status |= run(BIN / "mypy", *(args or ["src"]), check=False)
    return status


def cmd_bench(args: list[str]) -> int:
    ensure_venv("test")
    if not args:
        names = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))
        print("benchmarks:", ", ".join(names))
        return 2
    script = ROOT / "bench" / f"{args[0].removesuffix('.py')}.py"
    return run(PY, script, *args[1:], check=False)


COMMANDS = {"demo": cmd_demo, "test": cmd_test, "lint": cmd_lint, "bench": cmd_bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    if sys.version_info < (3, 11):  # noqa: UP036  # dev.py itself runs on any Python 3
        print("ActiveDataFlow needs Python 3.11 or newer", file=sys.stderr)
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
