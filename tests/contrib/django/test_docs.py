"""docs/django.md shows code that runs: each Python block is in examples/django_shop, which
test_example.py runs end to end."""

from __future__ import annotations

import re

from tests.contrib.django.test_command import ROOT


def _squeeze(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_every_python_block_is_in_the_example_project() -> None:
    page = (ROOT / "docs" / "django.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 4
    sources = "\n".join(_squeeze(p.read_text())
                        for p in (ROOT / "examples" / "django_shop").rglob("*.py"))
    for block in blocks:
        assert _squeeze(block) in sources, f"not in examples/django_shop:\n{block}"


def test_the_readme_links_the_page() -> None:
    assert "(docs/django.md)" in (ROOT / "README.md").read_text()
