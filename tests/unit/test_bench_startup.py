"""The start-up bench's ratio: the median over rounds of a subject's time over the same round's baseline's."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import pytest

from study.bench.startup import paired_ratio, time_process


def test_paired_ratio_is_the_median_of_the_rounds_ratios():
    rng = random.Random(3)
    for n in (1, 2, 7, 15):
        base = [rng.uniform(0.03, 0.07) for _ in range(n)]
        subj = [rng.uniform(0.08, 0.2) for _ in range(n)]
        ratios = sorted(s / b for s, b in zip(subj, base, strict=True))
        # Brute force: the middle one, or the mean of the middle two.
        expected = ratios[n // 2] if n % 2 else (ratios[n // 2 - 1] + ratios[n // 2]) / 2
        assert paired_ratio(subj, base) == pytest.approx(expected, rel=1e-12)


def test_load_that_hits_a_whole_round_or_one_odd_start_does_not_move_it():
    """What made the best-of-3 wall ratio print a false regression: a baseline's one fast start."""
    true_ratio, rng = 1.8, random.Random(5)
    base = [0.04 * rng.uniform(1.0, 1.05) for _ in range(7)]
    subj = [b * true_ratio for b in base]
    # Load slows whole rounds by up to 3x (both sides alike) ...
    slow = [rng.uniform(1.0, 3.0) for _ in range(7)]
    base_l, subj_l = (
        [b * s for b, s in zip(base, slow, strict=True)],
        [x * s for x, s in zip(subj, slow, strict=True)],
    )
    assert paired_ratio(subj_l, base_l) == pytest.approx(true_ratio, rel=1e-9)
    # ... and one start of either side, in two rounds, reads 2.5x slow: the median keeps the truth.
    for i, j in itertools.permutations(range(7), 2):
        b2, s2 = list(base_l), list(subj_l)
        b2[i] *= 2.5
        s2[j] *= 2.5
        assert paired_ratio(s2, b2) == pytest.approx(true_ratio, rel=1e-9)


@pytest.mark.parametrize(("subject", "baseline"), [([], []), ([1.0], [1.0, 2.0])])
def test_rounds_must_pair_up(subject, baseline):
    with pytest.raises(ValueError, match="paired_ratio: .* rounds; need the same, >= 1"):
        paired_ratio(subject, baseline)


def test_a_started_process_is_timed_by_its_own_cpu_seconds():
    # The child spins until its own CPU clock reads 0.2 s: at least that much is counted for it.
    wall, cpu = time_process([sys.executable, "-c", "import time\nwhile time.process_time() < 0.2: pass"])
    assert cpu >= 0.19 and wall >= 0.19


def test_a_start_that_fails_or_hangs_is_an_error_not_a_figure():
    with pytest.raises(subprocess.CalledProcessError) as failed:
        time_process([sys.executable, "-c", "raise SystemExit(3)"])
    assert failed.value.returncode == 3
    with pytest.raises(subprocess.CalledProcessError) as hung:
        time_process([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
    assert hung.value.returncode < 0  # killed by the timer, not left running
