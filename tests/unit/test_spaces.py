"""Search spaces: every shipped file loads and every key it sets is a config key;
bad files fail before Ray starts, naming the file, the line, the key and the
problem; the define-by-run function honours conditions and the baseline."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import optuna
import pytest

from study.config import TrialConfig, known_keys
from study.search.samplers import define_by_run, make_sampler
from study.search.space_parser import SpaceError, load_space, parse_space, resolve_space_path
from study.search.spaces import BASELINE_FLAG, REPO_SPACES

SHIPPED = sorted(REPO_SPACES.glob("*.yaml"))
VALID = """\
objectives:
  - {metric: val/clean_acc, direction: maximize}
  - {metric: val/corruption_acc, direction: maximize}
sampler: {name: tpe, seed: 0}
fixed:
  model.width: 8
parameters:
  frequency.mode: {type: choice, choices: [free, fixed, learned]}
  frequency.proportion_weight: {type: loguniform, low: 0.01, high: 1.0, when: {frequency.mode: [learned]}}
  frequency.perturbation: {type: uniform, low: 0.0, high: 0.5}
"""


def test_all_five_spaces_ship():
    assert {p.stem for p in SHIPPED} >= {"smoke", "proportion", "perturbation", "joint", "paper"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_space_loads_and_every_key_is_a_config_key(path):
    space = load_space(path)
    keys = set(known_keys())
    assert set(space.fixed) <= keys
    assert {p.key for p in space.parameters} <= keys
    assert all(o.metric.startswith("val/") for o in space.objectives)
    # Every bound/choice combination builds a config (what a trial will build).
    values = [p.representative_values() for p in space.parameters]
    for combo in itertools.islice(itertools.product(*values), 500):
        TrialConfig.from_flat({**space.fixed, **dict(zip((p.key for p in space.parameters), combo))})
    TrialConfig.from_flat(space.baseline_flat())
    assert space.baseline_flat()["frequency.mode"] == "free"
    assert space.baseline_flat()["frequency.perturbation"] == 0.0
    make_sampler(space)


def test_bare_name_resolves_to_the_repo_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repo: the package-relative folder must be found
    assert resolve_space_path("smoke") == REPO_SPACES / "smoke.yaml"
    with pytest.raises(ValueError, match="space nosuch: no such file"):
        resolve_space_path("nosuch")


def _error(text: str) -> str:
    with pytest.raises(ValueError) as e:
        parse_space(text, source="bad.yaml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("space bad.yaml")
    return msg


def test_unknown_parameter_key_names_file_line_and_key():
    msg = _error(VALID.replace("frequency.perturbation: {type", "frequency.perturbaton: {type"))
    assert re.match(
        r"space bad\.yaml line 10: parameters\[frequency\.perturbaton\]: not a trial-config key", msg
    )


def test_unknown_fixed_key_and_bad_fixed_value():
    assert "line 6: fixed[model.widht]: not a trial-config key" in _error(
        VALID.replace("model.width", "model.widht")
    )
    msg = _error(VALID.replace("model.width: 8", "model.width: -3"))
    assert "fixed[model.width]" in msg and "positive" in msg


def test_out_of_range_bound_names_key_and_value():
    msg = _error(VALID.replace("low: 0.0, high: 0.5", "low: -0.5, high: 0.5"))
    assert "line 10: parameters[frequency.perturbation]" in msg and "-0.5" in msg


def test_cross_key_problem_is_found_by_combining_bounds():
    # r_c = 0.95 leaves the high band empty at k = 3 (radii 0, 0.667, 0.943) but not at k = 7.
    text = (
        VALID + "  model.stem_kernel: {type: choice, choices: [3, 7]}\n"
        "  frequency.cutoff: {type: uniform, low: 0.3, high: 0.95}\n"
    )
    msg = _error(text)
    assert "parameters[frequency.cutoff]" in msg and "model.stem_kernel=3" in msg


def test_condition_must_refer_to_an_earlier_parameter():
    text = VALID.replace("when: {frequency.mode: [learned]}", "when: {model.width: [8]}")
    assert (
        "parameters[frequency.proportion_weight].when.model.width: "
        "a condition must refer to a parameter declared above" in _error(text)
    )
    text = VALID.replace("when: {frequency.mode: [learned]}", "when: {frequency.mode: [lerned]}")
    assert "'lerned' is not a choice of frequency.mode" in _error(text)


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            ("type: uniform", "type: normal"),
            "parameters[frequency.perturbation].type: 'normal' is not one of uniform",
        ),
        (("low: 0.0, high: 0.5", "low: 0.5, high: 0.1"), "high 0.1 must be greater than low 0.5"),
        (("low: 0.01, high: 1.0", "low: 0.0, high: 1.0"), "must be > 0 for a loguniform parameter"),
        (("name: tpe", "name: cmaes"), "sampler.name: 'cmaes' is not one of tpe, nsga2, random, grid"),
        (
            (
                "direction: maximize}\n  - {metric: val/corruption_acc",
                "direction: maximize}\n  - {metric: test/corruption_acc",
            ),
            "objectives must be val/ metrics",
        ),
        (
            ("model.width: 8", "model.width: 8\n  tracking.uri: http://x"),
            "fixed[tracking.uri]: set by freqstudy run",
        ),
        (("sampler:", "samplr:"), "samplr: unknown section"),
        (("fixed:\n  model.width: 8", "fixed:\n  frequency.mode: fixed"), "also set under fixed"),
    ],
)
def test_bad_fields_fail_with_the_problem(change, expected):
    assert expected in _error(VALID.replace(*change))


def test_invalid_yaml_names_the_line():
    assert re.search(r"line \d+: not valid YAML", _error(VALID + "  bad: [unclosed\n"))


def test_grid_needs_discrete_unconditioned_parameters():
    assert "grid sampler" in _error(VALID.replace("name: tpe", "name: grid"))


def test_define_by_run_marks_baseline_and_respects_conditions():
    space = parse_space(VALID, source="ok.yaml")
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=make_sampler(space))
    study.enqueue_trial({})
    fn = define_by_run(space)
    seen_learned = seen_other = False
    for i in range(30):
        trial = study.ask()
        flags = fn(trial)
        if i == 0:
            assert flags == {BASELINE_FLAG: True} and trial.params == {}
        else:
            assert flags == {BASELINE_FLAG: False}
            learned = trial.params["frequency.mode"] == "learned"
            assert ("frequency.proportion_weight" in trial.params) == learned
            assert 0.0 <= trial.params["frequency.perturbation"] <= 0.5
            seen_learned |= learned
            seen_other |= not learned
        study.tell(trial, [float(i), float(-i)])
    assert seen_learned and seen_other


def test_grid_sampler_covers_the_grid_after_the_baseline():
    space = load_space("paper")
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=make_sampler(space))
    study.enqueue_trial({})
    fn = define_by_run(space)
    points = set()
    for _ in range(space.num_trials):
        trial = study.ask()
        fn(trial)
        if trial.params:
            points.add(tuple(sorted(trial.params.items())))
        study.tell(trial, [1.0, 1.0])
    # 3 modes x 3 sigmas; the seeds are replicates of each configuration, not grid points.
    assert len(points) == space.num_trials - 1 == 9 and space.replicates == 3


def test_with_fixed_validates_and_refuses_searched_keys():
    space = parse_space(VALID, source="ok.yaml")
    assert space.with_fixed({"train.epochs": 1}).fixed["train.epochs"] == 1
    with pytest.raises(ValueError, match="searches this key"):
        space.with_fixed({"frequency.mode": "free"})
    with pytest.raises(ValueError, match="train.epochs"):
        space.with_fixed({"train.epochs": 0})


def test_importing_spaces_loads_neither_ray_nor_mlflow():
    import subprocess

    code = (
        "import sys, study.search.spaces, study.search.space_parser; "
        "print(any(m in sys.modules for m in ('ray', 'mlflow')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    ).stdout.strip()
    assert out == "False"


def test_points_and_replicates_parse_and_refuse_what_is_not_allowed():
    base = VALID + "replicates: 3\nnum_trials: 4\n"
    good = base + "points:\n  - {frequency.mode: free, frequency.perturbation: 0.3}\n"
    good += "  - {frequency.mode: learned, frequency.proportion_weight: 0.1, frequency.perturbation: 0.0}\n"
    space = parse_space(good, source="s.yaml")
    assert space.replicates == 3 and space.num_trials == 4
    assert space.points[0] == {"frequency.mode": "free", "frequency.perturbation": 0.3}
    # A learned point must give lambda (active for it); a free point must not.
    with pytest.raises(SpaceError) as info:
        parse_space(
            base + "points:\n  - {frequency.mode: learned, frequency.perturbation: 0.1}\n", source="s.yaml"
        )
    assert info.value.key == "points.0" and "frequency.proportion_weight is active" in info.value.problem
    with pytest.raises(SpaceError) as info:
        parse_space(
            base + "points:\n  - {frequency.mode: free, frequency.proportion_weight: 0.1, "
            "frequency.perturbation: 0.1}\n",
            source="s.yaml",
        )
    assert info.value.key == "points.0.frequency.proportion_weight" and "not active" in info.value.problem
    with pytest.raises(SpaceError, match="not a searched parameter"):
        parse_space(base + "points:\n  - {model.width: 8}\n", source="s.yaml")
    with pytest.raises(SpaceError, match="outside frequency.perturbation's range"):
        parse_space(
            base + "points:\n  - {frequency.mode: free, frequency.perturbation: 2.0}\n", source="s.yaml"
        )
    with pytest.raises(SpaceError, match=r"replicates: 0 is not allowed; allowed an integer in 1\.\.100"):
        parse_space(VALID + "replicates: 0\n", source="s.yaml")
    with pytest.raises(
        SpaceError, match=r"num_trials: 1000000000000 is not allowed; allowed an integer in 1\.\."
    ):
        parse_space(VALID + "num_trials: 1000000000000\n", source="s.yaml")
    with pytest.raises(SpaceError, match="leaves no room for the baseline and the 2 points"):
        parse_space(good.replace("num_trials: 4", "num_trials: 2"), source="s.yaml")


def test_a_key_written_twice_names_file_line_and_key():
    assert _error(VALID + "sampler: {name: random}\n") == (
        "space bad.yaml line 11: sampler: written twice (first at line 4)"
    )
    twice = VALID.replace("  model.width: 8\n", "  model.width: 8\n  model.width: 16\n")
    assert _error(twice) == "space bad.yaml line 7: model.width: written twice (first at line 6)"


def test_a_space_file_that_is_not_utf8_names_the_file_and_byte(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(VALID.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError) as e:
        load_space(path)
    assert str(e.value) == f"space {path}: not UTF-8 text (byte 0xe9 at offset {len(VALID.encode()) + 5})"


@pytest.mark.parametrize(
    "key, instead",
    [
        ("tracking.uri", "use --tracking-uri instead"),
        ("tracking.experiment", "use --study instead"),
        ("tracking.run_name", "it cannot be overridden"),
    ],
)
def test_set_refuses_keys_the_study_owns_naming_the_flag(key, instead, capsys):
    space = parse_space(VALID, source="ok.yaml")
    with pytest.raises(ValueError) as e:
        space.with_fixed({key: "x"})
    assert str(e.value) == f"--set {key}: set by freqstudy run for every trial; {instead}"
    # From the command line: one line, exit 2, before Ray or a server starts.
    from study.cli import main

    assert main(["run", "--space", "smoke", "--study", "s", "--set", f"{key}=http://elsewhere:5000"]) == 2
    assert (
        capsys.readouterr().err
        == f"freqstudy run: error: --set {key}: set by freqstudy run for every trial; {instead}\n"
    )
