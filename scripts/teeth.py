"""Does the suite catch the defects its tests are named for? Breaks a scratch copy on purpose.

Each entry of ``DEFECTS`` is a deliberate bug (``allow_pickle=True`` in a loader, α frozen, a
metric renamed, the seed level of ``compare_groups`` dropped, ...) written as small text patches
(find/replace in one file; a pattern that is not found is an error, so the list stays honest as
the code moves) and the tests that should catch it. The script copies the working tree to a
temporary folder (the real tree is never written), runs every named test once on the clean copy
(each must pass there), then for each defect patches the copy, runs its tests, and restores it.
A defect is *caught* when at least one of its tests fails or errors with the defect in place.
It prints a table and exits 1 when a defect went uncaught.

The scratch copy is what the tests import: pytest runs with the copy as working directory and
``PYTHONPATH``, byte-code caching off, and a plugin that stops the run unless ``study`` and
``models`` come from the copy (the editable install points at the real tree).

Not run by CI and not collected by pytest. From the repository root, with the project's
virtual environment active::

    python scripts/teeth.py              # every defect, its quick tests (a few minutes)
    python scripts/teeth.py --slow       # also the slow ones (real smoke study, real training)
    python scripts/teeth.py --check      # only that every pattern still applies
    python scripts/teeth.py -k pickle    # defects whose name contains "pickle"

Extend ``DEFECTS`` as issues land: a defect, the file and text it breaks, the tests that must
catch it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FREQSTUDY_SHARED", REPO.parent / "shared"))
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "runs", "out"
)
GUARD = "_teeth_guard"
COLLECTION = "<collection>"
GUARD_FAILED = 99
GUARD_SOURCE = f'''"""scripts/teeth.py's pytest plugin: stop unless the code tested is the scratch copy."""
import os

import pytest


def pytest_sessionstart(session):
    import models
    import study

    root = os.path.realpath(os.environ["TEETH_ROOT"])
    for module in (study, models):
        where = os.path.realpath(module.__file__)
        if not where.startswith(root + os.sep):
            message = f"teeth: {{module.__name__}} imported from {{where}}, not from {{root}}"
            pytest.exit(message, {GUARD_FAILED})
'''


@dataclass(frozen=True)
class Patch:
    """Replace ``find`` by ``replace`` in ``path`` (relative to the repository root), ``count`` times."""

    path: str
    find: str
    replace: str
    count: int = 1

    def apply(self, root: Path) -> None:
        file = root / self.path
        text = file.read_text()
        found = text.count(self.find)
        if found != self.count:
            raise PatternError(
                f"{self.path}: pattern found {found} times, expected {self.count}: {self.find!r}"
            )
        file.write_text(text.replace(self.find, self.replace))


@dataclass(frozen=True)
class Defect:
    name: str
    patches: tuple[Patch, ...]
    tests: tuple[str, ...]  # node ids (a function name selects all its parameters)
    slow: tuple[str, ...] = ()  # run with --slow only
    note: str = ""


@dataclass
class Outcome:
    tests: dict[str, str] = field(default_factory=dict)  # node id -> passed | failed | skipped | missing
    seconds: float = 0.0


class PatternError(ValueError):
    pass


def allow_pickle(path: str, find: str, count: int = 1) -> Patch:
    """``np.load(...)`` of ``find`` with ``allow_pickle=True``: ``allow_pickle=False`` flipped, or added."""
    if "allow_pickle=False" in find:
        return Patch(path, find, find.replace("allow_pickle=False", "allow_pickle=True"), count)
    assert find.endswith(")")
    return Patch(path, find, find[:-1] + ", allow_pickle=True)", count)


UNIT = "tests/unit/"
INTEGRATION = "tests/integration/"
TRAIN_FINAL = UNIT + "test_trial.py::test_trial_reports_each_epoch_and_ends_with_final_metrics"
STORED_OUTCOMES = INTEGRATION + "test_pareto_report.py::test_every_trial_stores_its_per_image_outcomes"
ALPHA_END_TO_END = (
    INTEGRATION + "test_train_mlflow.py::test_learned_mode_logs_alpha_history",
    INTEGRATION + "test_train_cli.py::test_train_then_inspect",
)
NPY_READ = '    with open(Path(path), "rb") as f:\n        shape, fortran, dtype, header = _header(f, what)\n'
ALPHA_NOTE = "the end-to-end alpha tests (--slow) are issue 21's"

DEFECTS: tuple[Defect, ...] = (
    Defect(
        "allow_pickle=True: .npz reader (outcomes)",
        (
            Patch(
                "study/npyfiles.py",
                "    try:\n        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))\n",
                "    with np.load(io.BytesIO(bytes(data)), allow_pickle=True) as npz:\n"
                "        return {name: npz[name] for name in npz.files}\n"
                "    try:\n        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))\n",
            ),
        ),
        (UNIT + "test_outcomes.py::test_refuses_object_arrays",),
    ),
    Defect(
        "allow_pickle=True: .npy reader (report's maps and alpha)",
        (
            Patch(
                "study/npyfiles.py",
                NPY_READ,
                "    return np.load(path, allow_pickle=True)\n" + NPY_READ,
            ),
        ),
        (
            INTEGRATION
            + "test_report_artifacts.py::test_maps_are_read_without_pickle_and_drawn_against_the_baseline",
            INTEGRATION + "test_report_artifacts.py::test_learned_alpha_is_read_without_pickle",
        ),
    ),
    Defect(
        "allow_pickle=True: CIFAR-10-C loader",
        (
            allow_pickle("study/cifar10c/layout.py", 'arr = np.load(path, mmap_mode="r")'),
            allow_pickle("study/cifar10c/layout.py", 'lab = np.load(folder / LABELS, mmap_mode="r")'),
        ),
        (UNIT + "test_cifar10c.py::test_files_that_need_pickle_are_refused_unread",),
    ),
    Defect(
        "allow_pickle=True: CIFAR-10-C cache check",
        (
            allow_pickle("study/cifar10c/generate.py", 'a = np.load(path, mmap_mode="r")'),
            allow_pickle("study/cifar10c/generate.py", 'labels = np.load(out / LABELS, mmap_mode="r")'),
        ),
        (UNIT + "test_cifar10c.py::test_files_that_need_pickle_are_refused_unread",),
    ),
    Defect(
        "weights_only=False: checkpoint loader",
        (
            Patch(
                "study/engine/checkpoint.py",
                'torch.load(path, map_location="cpu", weights_only=True)',
                'torch.load(path, map_location="cpu", weights_only=False)',
            ),
        ),
        (UNIT + "test_trial.py::test_a_checkpoint_that_would_run_code_is_refused_unread",),
    ),
    Defect(
        "plain pickle.loads: CIFAR-10 batches",
        (
            Patch(
                "study/data/cifar10.py",
                "obj = _BatchUnpickler(io.BytesIO(raw), source=path).load()",
                "obj = pickle.loads(raw)",
            ),
        ),
        (
            UNIT + "test_data.py::test_refuses_pickle_that_calls_os_system",
            UNIT + "test_data.py::test_refuses_eval_and_any_other_use_of_codecs_encode",
        ),
    ),
    Defect(
        "alpha frozen: no gradient (requires_grad=False)",
        (
            Patch(
                "models/stem.py",
                "self.alpha_logits = nn.Parameter(torch.logit(initial_alpha(self.out_channels)))",
                "self.alpha_logits = nn.Parameter(torch.logit(initial_alpha(self.out_channels))"
                ", requires_grad=False)",
            ),
        ),
        (
            UNIT + "test_stem.py::test_learned_alpha_starts_evenly_spread_and_gets_gradients",
            UNIT + "test_stem.py::test_gradients_reach_alpha_through_the_whole_network",
        ),
        slow=ALPHA_END_TO_END,
        note=ALPHA_NOTE,
    ),
    Defect(
        "alpha frozen: the optimiser's alpha group at lr 0",
        (
            Patch(
                "study/engine/trial.py",
                '"lr": t.lr * t.alpha_lr_multiplier}',
                '"lr": 0.0 * t.lr * t.alpha_lr_multiplier}',
            ),
        ),
        (UNIT + "test_trial.py::test_weight_decay_spares_batchnorm_biases_and_alpha_whose_lr_is_multiplied",),
        slow=ALPHA_END_TO_END,
        note=ALPHA_NOTE,
    ),
    Defect(
        "metric renamed: corruption_acc in metrics.summarize (both sides)",
        (
            Patch(
                "study/metrics.py",
                'out[f"{split}/corruption_acc"] = _mean(bench.values())',
                'out[f"{split}/corruption_accuracy"] = _mean(bench.values())',
            ),
        ),
        (UNIT + "test_outcomes.py::test_summarize_matches_the_means", TRAIN_FINAL),
        slow=(STORED_OUTCOMES,),
    ),
    Defect(
        "metric renamed: the trial logs clean_acc under another name",
        (
            Patch(
                "study/engine/trial.py",
                "metrics.update(summarize(split, clean_acc, accuracy[split]))",
                "metrics.update({k.replace('/clean_acc', '/clean_accuracy'): v"
                " for k, v in summarize(split, clean_acc, accuracy[split]).items()})",
            ),
        ),
        (TRAIN_FINAL,),
        slow=(STORED_OUTCOMES,),
    ),
    Defect(
        "seed level of compare_groups dropped",
        (
            Patch(
                "study/analysis/paired.py",
                "dist = two_level([sa, sb], stat.kind.contrast, n_resamples, seed)",
                "dist = two_level([sa.mean(0, keepdims=True), sb.mean(0, keepdims=True)],"
                " stat.kind.contrast, n_resamples, seed)",
            ),
        ),
        (UNIT + "test_paired.py::test_two_level_brute_force",),
        slow=(UNIT + "test_paired.py::test_calibration_groups_of_three_seeds",),
    ),
    Defect(
        "divergence check disabled",
        (Patch("study/engine/trial.py", "        if diverged is not None:\n", "        if False:\n"),),
        (
            UNIT + "test_trial.py::test_huge_learning_rate_is_a_diverged_result",
            UNIT + "test_trial.py::test_an_exploded_first_epoch_is_diverged_not_finished",
        ),
    ),
    Defect(
        "manifest hash unchecked: CIFAR-10-C copy's source",
        (
            Patch(
                "study/cifar10c/generate.py",
                "differ = [k for k in IDENTITY if manifest.get(k) != identity[k]]",
                'differ = [k for k in IDENTITY if k != "source_sha256" and manifest.get(k) != identity[k]]',
            ),
        ),
        (UNIT + "test_cifar10c.py::test_refuses_to_mix_copies",),
    ),
    Defect(
        "manifest hash unchecked: model weights",
        (Patch("study/engine/model_folder.py", 'if manifest.get("weights_sha256") != digest:', "if False:"),),
        (UNIT + "test_model_folder.py::test_weights_other_than_the_manifest_names_are_refused",),
    ),
    Defect(
        "YAML constructor that builds Python objects",
        (
            Patch(
                "study/yamlfiles.py",
                "yaml.constructor.SafeConstructor().construct_document(node)",
                "yaml.constructor.UnsafeConstructor().construct_document(node)",
            ),
        ),
        (UNIT + "test_yaml_safety.py::test_a_yaml_file_that_would_run_code_is_refused",),
    ),
    Defect(
        "YAML duplicate-key check builds keys as Python objects",
        (
            Patch(
                "study/yamlfiles.py",
                "scalars = yaml.constructor.SafeConstructor()",
                "scalars = yaml.constructor.UnsafeConstructor()",
            ),
        ),
        (UNIT + "test_yaml_safety.py::test_a_scalar_key_that_would_import_code_is_refused",),
    ),
    Defect(
        "storage check on --resume skipped",
        (Patch("study/search/tune.py", "note = check_resumable(path)", "note = None"),),
        (
            INTEGRATION
            + "test_study_storage.py::test_group_writable_study_folder_is_refused_naming_it_and_its_mode",
        ),
    ),
)


# Every call that reads a file with a format that can carry code (numpy's pickle fallback, torch,
# pickle, PyYAML) must be the pattern of some defect above, or be named here with the reason it
# need not be: a new loader then fails --check until the list says how it is tested.
LOADER_CALL = re.compile(
    r"\b(np\.load|torch\.load|pickle\.loads?|yaml\.(unsafe_|full_)?load|yaml\.constructor\.\w+|_BatchUnpickler)\("
)
LOADERS_EXEMPT = {
    ("study/cifar10c/worker.py", 'np.load(data, mmap_mode="r+")'): "the partial this run created",
    ("study/cifar10c/worker.py", 'np.load(source, mmap_mode="r")'): "the clean images this run saved",
}


def uncovered_loaders(root: Path) -> list[str]:
    """``path:line: text`` of each loader call in study/ and models/ that no defect patches."""
    finds = [(p.path, p.find) for d in DEFECTS for p in d.patches] + list(LOADERS_EXEMPT)
    out = []
    for file in sorted([*(root / "study").rglob("*.py"), *(root / "models").rglob("*.py")]):
        path = file.relative_to(root).as_posix()
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            code = not line.lstrip().startswith(("class ", "def ", "#"))
            if code and LOADER_CALL.search(line) and not any(p == path and f in line for p, f in finds):
                out.append(f"{path}:{number}: {line.strip()}")
    return out


def selected(defect: Defect, slow: bool) -> tuple[str, ...]:
    return defect.tests + (defect.slow if slow else ())


def scratch_copy(into: Path) -> Path:
    root = into / "repo"
    shutil.copytree(REPO, root, ignore=IGNORE, symlinks=True)
    (root / f"{GUARD}.py").write_text(GUARD_SOURCE)
    return root


def check_patterns(root: Path, defects: tuple[Defect, ...]) -> list[str]:
    """Apply every defect to the clean copy and put it back; the problems found."""
    problems = []
    for defect in defects:
        saved = {p.path: (root / p.path).read_text() for p in defect.patches}
        try:
            for patch in defect.patches:
                patch.apply(root)
        except (PatternError, OSError) as e:
            problems.append(f"{defect.name}: {e}")
        finally:
            for path, text in saved.items():
                (root / path).write_text(text)
    return problems


def run_tests(root: Path, tests: tuple[str, ...], report: Path, timeout: float) -> Outcome:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",  # a restored file never meets the defect's cached byte code
        "FREQSTUDY_SHARED": str(SHARED),  # the copy has no ../shared beside it
        "TEETH_ROOT": str(root),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        GUARD,
        "-p",
        "no:cacheprovider",
        "--junitxml",
        str(report),
    ]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [*cmd, *tests], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return Outcome({t: "timeout" for t in tests}, time.perf_counter() - started)
    if done.returncode == GUARD_FAILED:
        sys.exit(
            f"teeth: the tests did not import the scratch copy:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    outcome = Outcome(seconds=time.perf_counter() - started)
    cases = parse_junit(report) if report.exists() else {}
    for test in tests:
        path, _, name = test.partition("::")
        found = [s for (p, n), s in cases.items() if p == path and (n == name or n.startswith(name + "["))]
        if cases.get((path, COLLECTION)) == "failed" or "failed" in found:
            outcome.tests[test] = "failed"  # a collection error (the defect broke an import) fails them all
        elif not found:
            outcome.tests[test] = "missing"
        elif "failed" in found:
            outcome.tests[test] = "failed"
        elif all(s == "skipped" for s in found):
            outcome.tests[test] = "skipped"
        else:
            outcome.tests[test] = "passed"
    return outcome


def parse_junit(report: Path) -> dict[tuple[str, str], str]:
    """``{(file path, test name): passed | failed | skipped}`` of a pytest junit-xml report."""
    cases = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        status = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        if case.get("classname"):
            key = (case.get("classname").replace(".", "/") + ".py", case.get("name", ""))
        else:  # a file that failed to collect: named by its path, no class
            key = (case.get("name", "").replace(".", "/").removesuffix("/py") + ".py", COLLECTION)
        cases[key] = "failed" if cases.get(key) == "failed" else status  # a setup error and a pass
    return cases


def verdict(defect: Defect, outcome: Outcome, baseline: Outcome) -> str:
    caught = [t for t, s in outcome.tests.items() if s == "failed" and baseline.tests.get(t) == "passed"]
    return "CAUGHT" if caught else "NOT CAUGHT"


def print_table(rows: list[tuple[Defect, Outcome, str]], baseline: Outcome) -> None:
    width = max(len(d.name) for d, _, _ in rows)
    print(
        f"\n{'defect':<{width}}  {'verdict':<10}  {'s':>4}  tests run: result (clean copy / with the defect)"
    )
    print("-" * (width + 100))
    for defect, outcome, result in rows:
        lead = f"{defect.name:<{width}}  {result:<10}  {outcome.seconds:>4.0f}"
        for i, (test, status) in enumerate(outcome.tests.items()):
            clean = baseline.tests.get(test, "?")
            word = "caught" if status == "failed" and clean == "passed" else status
            print(f"{lead if i == 0 else ' ' * len(lead)}  {test.removeprefix('tests/')}: {clean} / {word}")
        if defect.note:
            print(f"{' ' * len(lead)}  ({defect.note})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", action="store_true", help="also run each defect's slow tests")
    parser.add_argument("--check", action="store_true", help="only check that every pattern applies")
    parser.add_argument("-k", dest="keyword", help="only defects whose name contains this text")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run (default 900)")
    args = parser.parse_args(argv)
    defects = tuple(d for d in DEFECTS if not args.keyword or args.keyword in d.name)
    if not defects:
        parser.error(f"-k {args.keyword!r}: no defect's name contains it")
    tmp = Path(tempfile.mkdtemp(prefix="freqstudy-teeth-"))
    try:
        root = scratch_copy(tmp)
        problems = check_patterns(root, defects)
        if problems:
            print("teeth: patterns that no longer apply (fix DEFECTS):", file=sys.stderr)
            print(*(f"  {problem}" for problem in problems), sep="\n", file=sys.stderr)
            return 2
        loaders = uncovered_loaders(root)
        if loaders:
            print("teeth: loaders no defect covers (add one, or to LOADERS_EXEMPT):", file=sys.stderr)
            print(*(f"  {line}" for line in loaders), sep="\n", file=sys.stderr)
            return 2
        print(f"teeth: {len(defects)} defects, every pattern applies; scratch copy {root}")
        if args.check:
            return 0
        every = tuple(dict.fromkeys(t for d in defects for t in selected(d, args.slow)))
        print(f"teeth: {len(every)} tests on the clean copy ...", flush=True)
        baseline = run_tests(root, every, tmp / "baseline.xml", args.timeout)
        broken = [t for t, s in baseline.tests.items() if s != "passed"]
        if broken:
            print("teeth: not passing on the clean copy (they cannot catch anything):", file=sys.stderr)
            print(*(f"  {t}: {baseline.tests[t]}" for t in broken), sep="\n", file=sys.stderr)
        rows = []
        for i, defect in enumerate(defects):
            print(f"teeth: [{i + 1}/{len(defects)}] {defect.name} ...", flush=True)
            saved = {p.path: (root / p.path).read_text() for p in defect.patches}
            try:
                for patch in defect.patches:
                    patch.apply(root)
                outcome = run_tests(root, selected(defect, args.slow), tmp / f"defect-{i}.xml", args.timeout)
            finally:
                for path, text in saved.items():
                    (root / path).write_text(text)
            rows.append((defect, outcome, verdict(defect, outcome, baseline)))
        print_table(rows, baseline)
        missed = [d.name for d, _, v in rows if v != "CAUGHT"]
        print(
            f"\n{len(rows) - len(missed)} of {len(rows)} defects caught"
            + (f"; not caught: {', '.join(missed)}" if missed else "")
        )
        return 1 if missed or broken else 0
    finally:
        if args.keep:
            print(f"teeth: scratch copy kept at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
