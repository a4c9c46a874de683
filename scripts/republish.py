"""Regenerate the generated sections of a published study document from its shipped export.

    python scripts/republish.py docs/results/paper-cpu/data docs/results/paper-cpu.md README.md

The document's ``results`` block becomes ``results.md`` of ``freqstudy report --from-export`` (headings
one level deeper); a ``results-test-table`` block (the README's) its first table, the test set's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from study.cli.report import results_from_export
from study.reporting.published import blocks, first_table, results_body, splice

GENERATORS = {"results": results_body, "results-test-table": first_table}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    export, docs = Path(argv[0]), [Path(p) for p in argv[1:]]
    with tempfile.TemporaryDirectory(prefix="freqstudy-republish-") as tmp:
        results = results_from_export(export, Path(tmp) / "results.md").read_text()
    for doc in docs:
        text = doc.read_text()
        for name in blocks(text):
            if name in GENERATORS:
                text = splice(text, name, GENERATORS[name](results))
        doc.write_text(text)
        print(f"regenerated {', '.join(n for n in blocks(text) if n in GENERATORS)} in {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
