"""The method and the CIFAR-10-C parameters live in the repository (``docs/``).

Docstrings and comments in ``study/`` and ``models/`` must not point outside the
checkout, every ``docs/<name>.md`` they cite must exist, and the two pages must
cover what the code relies on: every ``frequency.*`` config key and all 19
corruptions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from study.config import known_keys
from study.metrics import ALL_CORRUPTIONS

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SOURCES = sorted(p for pkg in ("study", "models") for p in (REPO / pkg).rglob("*.py"))
OUTSIDE = re.compile(r"DESIGN|shared/cifar10c|\.\./shared")
DOC_REF = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)")


def test_sources_found():
    assert len(SOURCES) > 10


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_reference_outside_the_repository(path: Path):
    lines = enumerate(path.read_text().splitlines(), 1)
    bad = [f"{n}: {line.strip()}" for n, line in lines if OUTSIDE.search(line)]
    assert not bad, f"{path.relative_to(REPO)} points outside the repository (use docs/): {bad}"


def test_cited_docs_exist():
    cited = {(name, p.relative_to(REPO)) for p in SOURCES for name in DOC_REF.findall(p.read_text())}
    assert cited, "no docs/*.md reference found in study/ or models/"
    missing = sorted(f"{src} cites docs/{name}" for name, src in cited if not (DOCS / name).is_file())
    assert not missing, missing


def test_cifar10c_doc_names_every_corruption():
    text = (DOCS / "cifar10c.md").read_text()
    missing = [name for name in ALL_CORRUPTIONS if f"`{name}`" not in text]
    assert len(ALL_CORRUPTIONS) == 19
    assert not missing, f"docs/cifar10c.md lacks {missing}"


def test_method_doc_names_every_frequency_key():
    text = (DOCS / "method.md").read_text()
    keys = [k for k in known_keys() if k.startswith("frequency.")]
    assert len(keys) >= 6
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"docs/method.md lacks {missing}"
