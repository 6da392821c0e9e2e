"""Schemathesis over the served engine's OpenAPI document, authenticated, in every mode.

``st run --mode all`` sends schema-valid and schema-violating data through every phase
(examples, coverage, fuzzing, and the stateful phase that follows the document's links from
a created flow to its operations) with every check on: no server error, statuses, content
types, headers and bodies conform to the document, invalid data is refused, auth is not
ignored. A custom check (``st_hooks.py``) adds that each refusal explains itself and leaves
the row counts unchanged.

``POST /heartbeat`` is left out: with its token, it would run the flows the fuzzer created,
and those may name any file path as a sink. Its own tests are in test_api/test_security.
``POST /inbox/{flow}`` is left out too: it takes the flow's inbox token, not the API's login
(its served tests are in test_inbox).

It runs against a SQLite, a PostgreSQL and a MariaDB store: some values (a NUL in a
string, NaN) only fail on the server databases (issue 12).

Cost: about 30-40 s per store (50 examples per operation); the output is kept in
test-artifacts/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.web.conftest import Served, serve
from tests.conftest import DATABASES
from tests.integration.web.conftest import ARTIFACTS, PASSWORD, ROOT, USER

MAX_EXAMPLES = os.environ.get("ADF_ST_MAX_EXAMPLES", "50")
SEED = os.environ.get("ADF_ST_SEED", "1")
HERE = Path(__file__).resolve().parent


@pytest.fixture(params=DATABASES)
def fuzzed(request: pytest.FixtureRequest, tmp_path: Path,
           make_database: Callable[[str], str]) -> Iterator[Served]:
    """``adf serve`` on a fresh store of each database. The fuzzer's own auth checks send
    wrong credentials on purpose: the failed-login throttle is raised out of its way."""
    yield from serve(make_database(request.param), tmp_path,
                     env={"ADF_WEB_LOGIN_FAILURES": "1000000"})


@pytest.mark.slow
def test_the_api_conforms_to_its_openapi_document_in_every_mode(fuzzed: Served) -> None:
    served = fuzzed
    st = Path(sys.executable).parent / "st"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.acceptance.web.st_hooks",
           "ADF_DATABASE_URL": served.database_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [str(st), "--no-color", "--config-file", str(HERE / "schemathesis.toml"),
         "run", f"{served.url}/openapi.json", "--auth", f"{USER}:{PASSWORD}",
         "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
         "--checks", "all", "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--workers", "1",
         # The heartbeat and the inbox take their own tokens, not the API's login: their
         # served tests (test_hardening, test_inbox) cover them.
         "--exclude-path", "/heartbeat", "--exclude-path", "/inbox/{flow}",
         "--request-timeout", "30"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    ARTIFACTS.mkdir(exist_ok=True)
    kind = served.database_url.split(":", 1)[0].split("+")[0]
    (ARTIFACTS / f"schemathesis-{kind}.txt").write_text(result.stdout + result.stderr)
    output = result.stdout
    assert result.returncode == 0, output[-6000:] + result.stderr[-2000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output, f"phase {phase} did not pass:\n{output[-3000:]}"
    assert "Selected: 18/20" in output  # every operation but the heartbeat and the inbox
    assert " failures" not in output.splitlines()[-1]
    assert served.process.poll() is None, "the server died under the fuzzer"
