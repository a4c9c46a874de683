"""``compare``'s one refusal about images names the two runs that differ, whichever they are
(issue 25: every comparison error used to read "A and B were not evaluated on the same images",
even when two replicates of A differed, or when the error was about something else)."""

from __future__ import annotations

import numpy as np
import pytest

from study.analysis.outcomes import Outcomes
from study.cli.compare import check_same_images


def outcomes(seed: int, *, limit: int = 10, source: str = "x") -> Outcomes:
    rng = np.random.default_rng(seed)
    arrays = {"test/clean": rng.random(20) < 0.7, "test/contrast/1": rng.random(limit) < 0.5}
    return Outcomes(arrays, {"test": {"source": source, "n": 20, "corruption_limit": limit}})


def test_runs_on_the_same_images_pass():
    check_same_images(
        {"RUN_A": [("a0", outcomes(0)), ("a1", outcomes(1))], "RUN_B": [("b0", outcomes(2))]}, "test"
    )


@pytest.mark.parametrize(
    "groups, text",
    [
        (
            {"RUN_A": [("a0", outcomes(0))], "RUN_B": [("b0", outcomes(1, limit=12))]},
            "b0 (RUN_B) and a0 (RUN_A) were not evaluated on the same images: "
            "outcomes: not the same test images: corruption_limit 10 vs 12",
        ),
        (
            {"RUN_A": [("a0", outcomes(0)), ("a1", outcomes(1, source="y"))], "RUN_B": [("b0", outcomes(2))]},
            "a1 (a replicate of RUN_A's configuration) and a0 (RUN_A) were not evaluated on the same "
            "images: outcomes: not the same test images: source 'x' vs 'y' (--single-runs compares "
            "the two runs alone)",
        ),
        (
            {"RUN_A": [("a0", outcomes(0))], "RUN_B": [("b0", outcomes(1)), ("b1", outcomes(2, limit=5))]},
            "b1 (a replicate of RUN_B's configuration) and a0 (RUN_A)",
        ),
    ],
    ids=["b-differs", "a-replicate-differs", "b-replicate-differs"],
)
def test_the_refusal_names_the_two_runs_that_differ(groups, text):
    with pytest.raises(ValueError) as e:
        check_same_images(groups, "test")
    assert text in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_split_a_run_lacks_is_named_with_that_run_alone():
    with pytest.raises(
        ValueError, match=r"^a1 \(a replicate of RUN_A's configuration\): no val outcomes; it has test$"
    ):
        val = Outcomes({"val/clean": np.ones(4, bool)}, {"val": {"source": "x", "n": 4}})
        check_same_images({"RUN_A": [("a0", val), ("a1", outcomes(1))], "RUN_B": [("b0", val)]}, "val")
