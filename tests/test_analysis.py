"""vizprobe.analysis: hand-computed statistics, exclusion, kappa, baselines on a real package, the report and CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from vizprobe.analysis import (
    ExclusionCriteria,
    StatsSettings,
    analyze,
    apply_exclusion,
    error_consistency,
    kappa,
    kappa_matrix,
    pairwise_tests,
    summarize,
)
from vizprobe.analysis.accuracy import participant_accuracy
from vizprobe.analysis.groups import main_trials, with_groups
from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.observers import Observer, get_observer, trial_views
from vizprobe.observers.answer import run_baselines
from vizprobe.observers.baselines import CenterObserver, RandomObserver, load_image, spectral_residual
from vizprobe.responses import validate_responses
from vizprobe.stimuli.manifest import Manifest

FAST = StatsSettings(n_resamples=4000, seed=0)


def _rows(pid: str, condition: str, outcomes: list[int], trials: list[str] | None = None, **extra) -> list[dict]:
    trials = trials or [f"t{i}" for i in range(len(outcomes))]
    return [
        dict(participant_id=pid, condition=condition, trial_id=t, correct=c, **extra)
        for t, c in zip(trials, outcomes, strict=True)
    ]


# ---------------------------------------------------------------- accuracy


def test_accuracy_mean_sem_and_bootstrap_match_hand_values():
    frame = pd.DataFrame(
        _rows("a", "natural", [1, 1, 1, 0])
        + _rows("b", "natural", [1, 0])
        + _rows("c", "natural", [1, 1, 1])
        + _rows("d", "natural", [0, 0, 1, 1, 0])
    )
    per = participant_accuracy(with_groups(validate_responses(frame)))
    values = np.array([0.75, 0.5, 1.0, 0.4])
    assert per.set_index("participant_id")["accuracy"].to_dict() == dict(zip("abcd", values, strict=True))
    s = summarize(per["accuracy"].to_numpy(), StatsSettings(n_resamples=20_000))
    mean = values.sum() / 4
    sem = np.sqrt(((values - mean) ** 2).sum() / 3) / 2
    assert s["mean"] == pytest.approx(mean) and s["sem"] == pytest.approx(sem)
    assert (s["two_sem_low"], s["two_sem_high"]) == pytest.approx((mean - 2 * sem, mean + 2 * sem))
    # exact bootstrap distribution: all 4^4 equally likely resamples of the participants
    means = np.array([np.mean(c) for c in itertools.product(values, repeat=4)])
    assert s["ci_low"] == pytest.approx(np.percentile(means, 2.5), abs=0.02)
    assert s["ci_high"] == pytest.approx(np.percentile(means, 97.5), abs=0.02)
    assert s["n_participants"] == 4


def test_summary_of_one_participant_or_identical_scores():
    one = summarize(np.array([0.7]))
    assert one["mean"] == 0.7 and np.isnan(one["sem"]) and np.isnan(one["ci_low"])
    same = summarize(np.array([0.5, 0.5, 0.5]))
    assert same["sem"] == 0 and same["ci_low"] == same["ci_high"] == 0.5


def test_permutation_tests_with_holm_find_a_strong_difference_only():
    rng = np.random.default_rng(3)
    rows = []
    for condition, p in (("synthetic", 0.9), ("natural", 0.5), ("none", 0.5)):
        for k in range(12):
            rows += _rows(f"{condition}{k}", condition, (rng.random(40) < p).astype(int).tolist())
    per = participant_accuracy(with_groups(validate_responses(pd.DataFrame(rows))))
    tests = {(r["a"], r["b"]): r for r in pairwise_tests(per, ["synthetic", "natural", "none"], FAST)}
    strong, null = tests[("synthetic", "none")], tests[("natural", "none")]
    assert strong["significant"] and strong["p_holm"] < 0.01 and strong["cohens_d"] > 2
    assert not null["significant"]
    x = per.loc[per["group"] == "synthetic", "accuracy"]
    y = per.loc[per["group"] == "none", "accuracy"]
    assert strong["difference"] == pytest.approx(x.mean() - y.mean())
    pooled = np.sqrt((x.var() * 11 + y.var() * 11) / 22)
    assert strong["cohens_d"] == pytest.approx((x.mean() - y.mean()) / pooled)
    ps = sorted(r["p"] for r in tests.values())  # Holm by hand: step-down, monotone, capped at 1
    holm = np.minimum(1, np.maximum.accumulate([p * (3 - i) for i, p in enumerate(ps)]))
    assert sorted(r["p_holm"] for r in tests.values()) == pytest.approx(list(holm))


# ---------------------------------------------------------------- error consistency


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 1, 0, 0], [1, 1, 0, 0], 1.0),
        ([1, 1, 0, 0], [0, 0, 1, 1], -1.0),
        ([1, 1, 1, 0], [1, 0, 1, 0], 0.5),  # c_obs 3/4, c_exp 0.75*0.5 + 0.25*0.5 = 0.5
        ([1, 1, 1], [1, 1, 1], 1.0),  # degenerate: c_obs = c_exp = 1 (both all right)
        ([0, 0, 0], [0, 0, 0], 1.0),  # degenerate: both all wrong
        ([1, 1, 1], [0, 0, 0], 0.0),  # c_obs = c_exp = 0
        ([1, 1, 1, 1], [1, 0, 1, 0], 0.0),  # one constant observer: c_obs = c_exp
    ],
)
def test_kappa_known_cases(a, b, expected):
    assert error_consistency(a, b) == pytest.approx(expected)


def test_kappa_degenerate_definitions():
    assert kappa(1.0, 1.0) == 1.0
    assert np.isnan(kappa(0.5, 1.0))  # c_exp = 1 with c_obs < 1: undefined (cannot arise on shared trials)
    with pytest.raises(ValueError):
        error_consistency([1, 0], [1])


def test_kappa_equals_sklearn_cohen_kappa():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
        if len(set(a)) == len(set(b)) == 1 and a[0] == b[0]:
            continue  # degenerate: sklearn gives NaN, we define 1
        assert error_consistency(a, b) == pytest.approx(cohen_kappa_score(a, b, labels=[0, 1]))


def test_kappa_matrix_averages_pairs_over_shared_trials():
    rng = np.random.default_rng(1)
    rows, answers = [], {}
    for condition, n in (("natural", 3), ("none", 2)):
        for k in range(n):
            trials = [f"t{i}" for i in sorted(rng.choice(8, size=6, replace=False))]
            outcomes = rng.integers(0, 2, 6).tolist()
            answers[(condition, f"{condition}{k}")] = dict(zip(trials, outcomes, strict=True))
            rows += _rows(f"{condition}{k}", condition, outcomes, trials)
    frame = main_trials(with_groups(validate_responses(pd.DataFrame(rows).sample(frac=1, random_state=0))))
    matrix = kappa_matrix(frame, ["natural", "none"], min_shared=1)

    def by_hand(a: str, b: str) -> list[float]:
        out = []
        for (ca, pa), (cb, pb) in itertools.product(answers, answers):
            if ca != a or cb != b or pa == pb or (a == b and pa > pb):
                continue
            shared = sorted(set(answers[(ca, pa)]) & set(answers[(cb, pb)]))
            out.append(
                error_consistency([answers[(ca, pa)][t] for t in shared], [answers[(cb, pb)][t] for t in shared])
            )
        return out

    for a, b in itertools.product(["natural", "none"], repeat=2):
        expected = by_hand(a, b)
        assert matrix[a][b]["n_pairs"] == len(expected)
        assert matrix[a][b]["mean"] == pytest.approx(np.mean(expected))
        assert matrix[a][b]["sem"] == pytest.approx(stats.sem(expected) if len(expected) > 1 else np.nan, nan_ok=True)
    assert matrix["natural"]["none"]["n_pairs"] == 6 and matrix["natural"]["natural"]["n_pairs"] == 3


def _independent_observers(tasks: dict[str, list[list[str]]], accuracy: float, seed: int) -> pd.DataFrame:
    """Participants who answer each trial correctly with probability `accuracy`, independently of everyone."""
    rng = np.random.default_rng(seed)
    rows = []
    for condition, lists in tasks.items():
        for k, trials in enumerate(lists):
            rows += _rows(
                f"{condition}{k}", condition, (rng.random(len(trials)) < accuracy).astype(int).tolist(), trials
            )
    return main_trials(with_groups(validate_responses(pd.DataFrame(rows))))


def test_kappa_of_independent_observers_is_zero_only_over_the_same_trials():
    """The paper's schedule (task k of every condition answers image set k) gives kappa ~ 0 between
    independent observers; image sets drawn per condition and pairs sharing a few trials inflate it."""
    units, sets, per_condition = 18, 10, 200
    same = {c: [[f"u{u}-s{k % sets}" for u in range(units)] for k in range(per_condition)] for c in ("natural", "none")}
    matrix = kappa_matrix(_independent_observers(same, 0.7, 0), ["natural", "none"])
    assert (
        abs(matrix["natural"]["none"]["mean"]) < 0.05
        and matrix["natural"]["none"]["n_pairs"] == per_condition**2 // sets
    )
    rng = np.random.default_rng(1)
    offsets = {c: rng.integers(0, sets, units) for c in ("natural", "none")}  # the old builder's per-condition offsets
    drawn = {
        c: [[f"u{u}-s{(k + offsets[c][u]) % sets}" for u in range(units)] for k in range(per_condition)]
        for c in ("natural", "none")
    }
    frame = _independent_observers(drawn, 0.7, 0)
    assert kappa_matrix(frame, ["natural", "none"], min_shared=1)["natural"]["none"]["mean"] > 0.1  # the inflation
    honest = kappa_matrix(frame, ["natural", "none"])["natural"]["none"]
    assert honest["n_pairs"] == 0 and "same main trials" in honest["why"]


# ---------------------------------------------------------------- exclusion


def _participant(pid: str, condition: str = "natural", **overrides) -> list[dict]:
    """A participant passing every criterion; `overrides` break one."""
    timing = ("instruction_time_s", "total_time_s", "practice_attempts")
    info = dict(instruction_time_s=60.0, total_time_s=300.0, practice_attempts=1)
    info |= {k: v for k, v in overrides.items() if k in timing}
    info |= dict(participant_id=pid, condition=condition, is_practice=0)
    catch = overrides.get("catch", [1, 1, 1])
    choices = overrides.get("choices", [0, 1, 0, 1])
    confidence = overrides.get("confidence", [1, 2, 3, 3])
    rows = [
        info | dict(trial_id=f"m{i}", is_catch=0, choice=c, correct=i % 2, confidence=confidence[i])
        for i, c in enumerate(choices)
    ]
    rows += [
        info | dict(trial_id=f"c{i}", is_catch=1, choice=choices[i], correct=c, confidence=confidence[i])
        for i, c in enumerate(catch)
    ]
    return rows + [info | dict(trial_id="p0", is_catch=0, is_practice=1, choice=1, correct=1, confidence=2)]


CRAFTED = {
    "catch_accuracy": dict(catch=[1, 0, 0]),
    "instruction_time": dict(instruction_time_s=12.0),
    "total_time": dict(total_time_s=1200.0),
    "practice_attempts": dict(practice_attempts=6),
    "same_side": dict(choices=[1, 1, 1, 1]),
    "same_confidence": dict(confidence=[2, 2, 2, 2]),
}


def test_each_crafted_participant_is_removed_by_exactly_its_criterion():
    rows = _participant("good") + _participant("fast", total_time_s=60.0) + _participant("ok2", condition="none")
    rows += [r for name, o in CRAFTED.items() for r in _participant(f"bad-{name}", **o)]
    criteria = ExclusionCriteria(require_two_confidence_levels=True)  # opt-in: not in the paper
    result = apply_exclusion(validate_responses(pd.DataFrame(rows)), criteria)
    for name, entry in result.criteria.items():
        expected = [f"bad-{name}"] + (["fast"] if name == "total_time" else [])
        assert sorted(entry["participants"]) == sorted(expected), name
        assert entry["excluded"] == len(expected) and entry["skipped"] is None
    assert sorted(result.kept["participant_id"].unique()) == ["good", "ok2"]
    assert result.per_condition == {
        "natural": {"before": 8, "excluded": 7, "after": 1},
        "none": {"before": 1, "excluded": 0, "after": 1},
    }


def test_thresholds_differ_by_condition_as_in_the_paper():
    """In `none` the paper excluded below 15 s of instructions and 40 s in all (elsewhere 20 s and 90 s)."""
    rows = []
    for condition in ("natural", "none"):
        rows += _participant(f"{condition}-17s", condition, instruction_time_s=17.0)
        rows += _participant(f"{condition}-60s-total", condition, total_time_s=60.0)
        rows += _participant(f"{condition}-30s-total", condition, total_time_s=30.0)
    frame = validate_responses(pd.DataFrame(rows))
    result = apply_exclusion(frame)
    assert sorted(result.excluded) == ["natural-17s", "natural-30s-total", "natural-60s-total", "none-30s-total"]
    assert result.criteria["total_time"]["threshold_by_condition"] == {"none": "40-900 s"}
    assert sorted(apply_exclusion(frame, ExclusionCriteria(per_condition={})).excluded) == sorted(
        f"{c}-{k}" for c in ("natural", "none") for k in ("17s", "60s-total", "30s-total")
    )
    one_button = _participant("sure", confidence=[3, 3, 3, 3])
    assert apply_exclusion(validate_responses(pd.DataFrame(one_button))).excluded == []  # the rule is opt-in


def test_exclusion_thresholds_are_parameters_and_missing_columns_are_skipped():
    rows = [r for name, o in CRAFTED.items() for r in _participant(f"bad-{name}", **o)]
    lenient = ExclusionCriteria(
        min_catch_accuracy=0.3,
        min_instruction_time_s=10,
        max_total_time_s=1500,
        max_practice_attempts=6,
        require_both_sides=False,
        require_two_confidence_levels=False,
    )
    assert apply_exclusion(validate_responses(pd.DataFrame(rows)), lenient).excluded == []
    bare = validate_responses(pd.DataFrame(rows)[["participant_id", "condition", "trial_id", "correct"]])
    result = apply_exclusion(bare)
    assert result.excluded == []
    assert all(entry["skipped"] for name, entry in result.criteria.items() if name != "same_confidence")
    assert result.criteria["same_confidence"]["threshold"] == "off"  # opt-in, not a skipped check
    assert "no instruction_time_s column" in result.criteria["instruction_time"]["skipped"]


def test_machine_observers_are_never_excluded():
    rows = _participant("human", choices=[1, 1, 1, 1]) + [
        dict(r, participant_id="baseline:center", expertise="machine", observer="baseline:center")
        for r in _participant("x", choices=[1, 1, 1, 1])
    ]
    result = apply_exclusion(validate_responses(pd.DataFrame(rows)))
    assert result.excluded == ["human"] and set(result.kept["participant_id"]) == {"baseline:center"}


# ---------------------------------------------------------------- report and input errors


def _study(seed: int = 0) -> pd.DataFrame:
    """A small complete study: 3 conditions x 5 participants, 8 main + 3 catch trials each, and one machine."""
    rng = np.random.default_rng(seed)
    rows = []
    for condition, p in (("synthetic", 0.8), ("natural", 0.7), ("none", 0.55)):
        for k in range(5):
            info = dict(
                participant_id=f"{condition[:3]}{k}",
                condition=condition,
                is_practice=0,
                instruction_time_s=40.0,
                total_time_s=400.0,
                practice_attempts=1,
                expertise="expert" if k < 2 else "lay",
            )
            for i in range(8):
                answer = dict(
                    choice=int(rng.integers(2)),
                    correct=int(rng.random() < p),
                    confidence=int(rng.integers(1, 4)),
                    rt_ms=float(rng.uniform(500, 4000)),
                    away_count=int(k == 0 and i < 2),  # the first participant left the window twice
                    away_ms=1500.0 * (k == 0 and i < 2),
                )
                rows.append(info | answer | dict(trial_id=f"u{i % 4}:{i}", unit=f"L{i % 2}:{i % 4}", is_catch=0))
            for i in range(3):
                rows.append(
                    info
                    | dict(
                        trial_id=f"catch{i}",
                        unit="L0:0",
                        is_catch=1,
                        choice=i % 2,
                        correct=1,
                        confidence=3,
                        rt_ms=900.0,
                    )
                )
    machine = dict(participant_id="model-x", condition="none", is_catch=0, is_practice=0, choice=1, expertise="machine")
    rows += [machine | dict(trial_id=f"u{i % 4}:{i}", unit=f"L{i % 2}:{i % 4}", correct=int(i < 6)) for i in range(8)]
    return pd.DataFrame(rows)


def test_cli_analyze_writes_report_and_numbers_match_pandas(tmp_path: Path, capsys):
    study = _study()
    study.to_csv(tmp_path / "responses.csv", index=False)
    out = tmp_path / "report"
    assert (
        main(["analyze", "--responses", str(tmp_path / "responses.csv"), "--out", str(out), "--resamples", "2000"]) == 0
    )
    printed = capsys.readouterr().out
    assert str(out / "report.html") in printed and "synthetic" in printed and "95% CI" in printed
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html and 'src="figures' not in html
    for name in ("accuracy", "kappa", "per_layer", "per_unit", "confidence", "response_time"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert (out / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    results = json.loads((out / "results.json").read_text())
    humans = study[(study["expertise"] != "machine") & (study["is_catch"] == 0)]
    per = humans.groupby(["condition", "participant_id"])["correct"].mean()
    for condition in ("synthetic", "natural", "none"):
        entry = results["accuracy"][condition]
        assert entry["mean"] == pytest.approx(per[condition].mean())
        assert entry["sem"] == pytest.approx(per[condition].std(ddof=1) / np.sqrt(5))
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"] and entry["n_participants"] == 5
    assert list(results["accuracy"]) == ["synthetic", "natural", "none"]
    assert results["observers"]["model-x"]["accuracy"] == pytest.approx(0.75)
    assert "model-x" in results["kappa"] and results["kappa"]["synthetic"]["model-x"]["n_pairs"] == 5
    assert results["kappa"]["none"]["natural"]["n_pairs"] == 25
    assert results["exclusion"]["n_before"] == 15 and results["exclusion"]["n_excluded"] == 0
    assert set(results["accuracy_by_expertise"]["natural"]) == {"expert", "lay"}
    assert set(results["accuracy_by_layer"]["none"]) == {"L0", "L1"}
    assert results["skipped"] == {"baselines": "no stimulus package given (--stimuli)"}
    assert len(results["pairwise"]) == 3
    attention = results["attention"]  # nobody excluded for it; accuracy also reported without those trials
    assert (attention["trials_away"], attention["participants_away"], attention["away_ms_median"]) == (6, 3, 1500.0)
    present = humans[humans["away_count"] == 0].groupby(["condition", "participant_id"])["correct"].mean()
    for condition in ("synthetic", "natural", "none"):
        entry = attention["accuracy_without_away_trials"][condition]
        assert entry["mean"] == pytest.approx(present[condition].mean()) and entry["n_trials"] == 38
    assert "window lost focus or the tab was hidden" in html


def test_only_required_columns_still_gives_a_report(tmp_path: Path):
    study = _study()[["participant_id", "condition", "trial_id", "correct"]]
    results = analyze(study, tmp_path / "r", settings=FAST)
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "figures" / "kappa.svg").is_file()
    for name in (
        "accuracy_by_expertise",
        "accuracy_by_layer",
        "accuracy_by_unit",
        "confidence",
        "response_time",
        "baselines",
        "exclusion.catch_accuracy",
        "exclusion.total_time",
        "exclusion.same_side",
    ):
        assert results["skipped"][name], name
    assert "Skipped analyses" in (tmp_path / "r" / "report.html").read_text()
    assert results["accuracy"]["none"]["n_participants"] == 6  # the machine is a participant of none now


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("correct", "maybe", "row 4, column 'correct'"),
        ("participant_id", "", "row 4, column 'participant_id'"),
        ("condition", "natural images!", "row 4, column 'condition'"),
    ],
)
def test_malformed_required_values_name_row_and_column(tmp_path: Path, capsys, column, value, message):
    study = _study().astype(object)
    study.loc[2, column] = value
    study.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(VizprobeError, match=message):
        analyze(tmp_path / "bad.csv", tmp_path / "r")
    assert main(["analyze", "--responses", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_other_studies_messy_files_load_with_their_condition_names(tmp_path: Path, capsys):
    """As in the ICLR 2021 raw data: condition names of another design, negative response times and a
    confidence outside 1-3. Only the required columns are strict; the bad optional cells become missing,
    with a warning, and the report and the CLI count them. Accuracy is unchanged (it reads `correct`)."""
    from vizprobe.responses import InvalidValuesWarning

    study = _study().astype(object)
    renamed = {"natural": "Min-Max-9/natural", "none": "Min-Max-9/none", "synthetic": "Min-Max-9/synthetic"}
    study["condition"] = study["condition"].map(lambda c: renamed.get(c, c))
    bad_rt = [0, 3, 7]
    study.loc[bad_rt, "rt_ms"] = [-120.0, -5.0, "n/a"]
    study.loc[4, "confidence"] = 9
    study.to_csv(tmp_path / "iclr.csv", index=False)
    with pytest.warns(InvalidValuesWarning, match=r"3 invalid value\(s\) in the optional column 'rt_ms'"):
        results = analyze(tmp_path / "iclr.csv", tmp_path / "r", settings=FAST)
    assert results["input"]["invalid_values"]["rt_ms"]["count"] == 3
    assert results["input"]["invalid_values"]["confidence"]["count"] == 1
    assert "row 2, column 'rt_ms': must be >= 0" in results["input"]["invalid_values"]["rt_ms"]["first"]
    assert set(results["accuracy"]) == set(study["condition"])
    clean = analyze(_study(), tmp_path / "clean", settings=FAST)
    for old, new in renamed.items():
        assert results["accuracy"][new]["mean"] == pytest.approx(clean["accuracy"][old]["mean"])
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Min-Max-9/natural" in page and "3 invalid value(s) in the optional column <code>rt_ms</code>" in page
    assert main(["analyze", "--responses", str(tmp_path / "iclr.csv"), "--out", str(tmp_path / "cli")]) == 0
    assert "treated as missing: 3 invalid value(s) in column 'rt_ms'" in capsys.readouterr().out


def test_missing_required_column_and_missing_file(tmp_path: Path):
    with pytest.raises(VizprobeError, match="required column"):
        analyze(_study().drop(columns=["correct"]), tmp_path / "r")
    with pytest.raises(VizprobeError, match="does not exist"):
        analyze(tmp_path / "nope.csv", tmp_path / "r")


def test_database_url_is_read_through_the_export(tmp_path: Path, monkeypatch):
    import vizprobe.experiment.export as export

    seen = []
    monkeypatch.setattr(export, "export_frame", lambda url: seen.append(url) or _study())
    results = analyze("sqlite:///study.db", tmp_path / "r", settings=FAST)
    assert seen == ["sqlite:///study.db"] and results["accuracy"]["natural"]["n_participants"] == 5


# ---------------------------------------------------------------- baselines on a real stimulus package


@pytest.fixture(scope="module")
def baseline_rows(stimulus_package: Path) -> pd.DataFrame:
    return run_baselines(stimulus_package, seed=0)


def test_baselines_answer_every_main_trial(stimulus_package: Path, baseline_rows: pd.DataFrame):
    manifest = Manifest.load(stimulus_package).data
    main_ids = sorted(t["trial_id"] for t in manifest["trials"] if t["kind"] == "main")
    for name in ("center", "variance", "saliency", "random", "oracle"):
        rows = baseline_rows[baseline_rows["observer"] == f"baseline:{name}"]
        assert sorted(rows["trial_id"]) == main_ids, name
        assert set(rows["expertise"]) == {"machine"} and set(rows["condition"]) == {"none"}
    assert baseline_rows.loc[baseline_rows["observer"] == "baseline:oracle", "correct"].eq(1).all()
    for name in ("center", "variance", "saliency", "random"):
        assert isinstance(get_observer(name), Observer)


def test_baselines_as_observers_answer_as_the_old_formulas(stimulus_package: Path, baseline_rows: pd.DataFrame):
    """The baselines' answers, recomputed here from their formulas (centre distance, patch variance of the
    query, a sha256 coin per trial, the manifest's key), are the rows `run_baselines` gives."""
    import hashlib

    manifest = Manifest.load(stimulus_package).data
    size = manifest["image_size"]

    def coin(trial_id: str, salt: str) -> int:
        return hashlib.sha256(f"vizprobe-baseline-{salt}:0:{trial_id}".encode()).digest()[0] & 1

    def pick(scores: list[float], mirrored: bool, trial_id: str) -> int:  # lower score wins; a tie is a coin
        left, right = scores[::-1] if mirrored else scores
        return 1 if right < left else 0 if left < right else coin(trial_id, "tie")

    for trial in (t for t in manifest["trials"] if t["kind"] == "main"):
        query = np.asarray(Image.open(stimulus_package / trial["base_image"]).convert("RGB"), dtype=np.float64) / 255
        patches = [o["patch"] for o in trial["options"]]  # stored order
        distance = [-np.hypot(x + s / 2 - size / 2, y + s / 2 - size / 2) for x, y, s in patches]
        variance = [query[y : y + s, x : x + s].var() for x, y, s in patches]
        for name in ("center", "variance", "random", "oracle"):
            row = baseline_rows[
                (baseline_rows["observer"] == f"baseline:{name}") & (baseline_rows["trial_id"] == trial["trial_id"])
            ]
            side = int(row["max_side"].iloc[0])  # where this baseline was shown the maximal option
            mirrored = side != trial["correct"]
            expected = {
                "center": pick(distance, mirrored, trial["trial_id"]),
                "variance": pick(variance, mirrored, trial["trial_id"]),
                "random": coin(trial["trial_id"], "random"),
                "oracle": side,
            }[name]
            assert row["choice"].tolist() == [expected], (name, trial["trial_id"])
            assert row["correct"].tolist() == [int(expected == side)]


def test_random_is_reproducible_and_does_not_copy_the_answers(stimulus_package: Path):
    views = trial_views(stimulus_package, "natural")
    manifest = Manifest.load(stimulus_package).data
    correct = np.array([next(t["correct"] for t in manifest["trials"] if t["trial_id"] == v.trial_id) for v in views])
    runs = [RandomObserver(seed).predict(views) for seed in range(6)]
    assert np.array_equal(runs[0], RandomObserver(0).predict(views))
    assert np.array_equal(runs[0][::-1], RandomObserver(0).predict(views[::-1]))  # per trial, not per position
    assert not all(np.array_equal(r, runs[0]) for r in runs[1:])
    assert not all(np.array_equal(r, correct) or np.array_equal(r, 1 - correct) for r in runs)


def test_center_matches_a_hand_check_of_patch_distances(stimulus_package: Path):
    manifest = Manifest.load(stimulus_package).data
    views = trial_views(stimulus_package, "blur")
    answers = CenterObserver().predict(views)
    size = manifest["image_size"]
    checked = 0
    for trial, answer in zip((t for t in manifest["trials"] if t["kind"] == "main"), answers, strict=True):
        (lx, ly, ls), (rx, ry, rs) = (o["patch"] for o in trial["options"])
        left = (lx + ls / 2 - size / 2) ** 2 + (ly + ls / 2 - size / 2) ** 2
        right = (rx + rs / 2 - size / 2) ** 2 + (ry + rs / 2 - size / 2) ** 2
        if left != right:
            assert answer == (1.0 if right > left else 0.0), trial["trial_id"]
            checked += 1
    assert checked >= 2


def test_saliency_on_real_images(stimulus_package: Path, baseline_rows: pd.DataFrame):
    view = trial_views(stimulus_package, "none")[0]
    image = load_image(view.query)
    smap = spectral_residual(image)
    assert smap.shape == image.shape[:2] and np.isfinite(smap).all() and smap.std() > 0 and smap.max() == 1
    biased = spectral_residual(image, centre_sigma=0.3)
    h, w = smap.shape
    ys, xs = np.mgrid[0:h, 0:w]
    bias = np.exp(-(((ys - h / 2) / (0.3 * h)) ** 2 + ((xs - w / 2) / (0.3 * w)) ** 2) / 2)
    np.testing.assert_allclose(biased, smap * bias / (smap * bias).max(), rtol=1e-9)  # the variant, by hand
    assert get_observer("saliency-centre").name == "saliency-centre"
    flat = get_observer("saliency", model=lambda im: np.ones(im.shape[:2])).predict([view])
    assert flat.tolist() == [0.5]  # a flat saliency map cannot choose
    assert set(baseline_rows.loc[baseline_rows["observer"] == "baseline:saliency", "choice"]) <= {0, 1}


def test_analyze_with_stimuli_shows_baselines_beside_humans(stimulus_package: Path, tmp_path: Path):
    manifest = Manifest.load(stimulus_package).data
    rows = []
    for k, task in enumerate(manifest["tasks"]):
        for i, tid in enumerate(task["trial_ids"]):
            rows.append(
                dict(participant_id=f"p{k}", condition=task["condition"], trial_id=tid, correct=int((i + k) % 3 > 0))
            )
    results = analyze(pd.DataFrame(rows), tmp_path / "r", stimulus_package, settings=FAST)
    assert results["baselines"]["oracle"]["accuracy"] == 1.0
    assert set(results["baselines"]) == {"center", "variance", "saliency", "random", "oracle"}
    assert "baseline:center" in results["kappa"]["synthetic"]
    assert results["exclusion"]["criteria"]["catch_accuracy"]["skipped"] is None  # is_catch filled from the manifest
    assert set(results["accuracy_by_unit"]["natural"]) == {u["unit"] for u in manifest["units"] if u["role"] == "main"}
    assert (tmp_path / "r" / "figures" / "per_unit.png").is_file()


# ---------------------------------------------------------------- the predecessor study's raw data
def _borowski_raw(rng: np.random.Generator) -> pd.DataFrame:
    """A file in the format of Borowski et al. 2021's `experiment_II_main_practice_catch_trials_preprocessed.csv`
    (columns as their data README describes): 6 lab participants (3 experts, 3 naive), two reference conditions
    each, 2 practice, 6 main and 3 catch trials per condition; participant 12 misses 2 of 3 catch trials in
    `optimized`."""
    rows = []
    for subject in (1, 2, 3, 11, 12, 13):
        trial_nr = 0
        for block, instr in enumerate(("optimized", "natural")):
            kinds = ["practice"] * 2 + ["main"] * 9
            for k, kind in enumerate(kinds):
                catch = kind == "main" and k >= 8
                layer, kernel = f"layer_{k % 9}", k % 4
                missed = subject == 12 and instr == "optimized" and k < 10
                right = not missed if catch else bool(rng.random() < 0.7)
                truth = "a" if rng.random() < 0.5 else "b"
                answer = truth if right else {"a": "b", "b": "a"}[truth]
                confidence = int(rng.integers(1, 4))
                rows.append(
                    {
                        "": len(rows),
                        "subject_id_within_expert_type": subject % 10,
                        "trial_nr": trial_nr,
                        "block_nr": block,
                        "batch_block": "a",
                        "instr_type": instr,
                        "trial_type": kind,
                        "instruction_grid_mode": "max_max",
                        "n_instruction_patches": 9,
                        "catch_trial": catch,
                        "batch": 0 if kind == "practice" else 3,
                        "layer": layer,
                        "kernel_size": kernel,
                        "channel": "channel_0",
                        "query_order": "max_min" if truth == "a" else "min_max",
                        "correct": right,
                        "conf_rating": -confidence if answer == "a" else confidence,
                        "RT": float(rng.uniform(0.5, 8)),
                        "timeout": False,
                        "response": answer,
                        "correct_response": truth,
                        "query_image_a": "x/max_1.png",
                        "query_image_b": "x/min_0.png",
                        "old_trial_nr": "",
                        "old_block_nr": "",
                        "seed": 42,
                        "unit_name": f"4{'abcde'[k % 5]}, 3x3 ",
                        "condition_name": "Max-9",
                        "abs_conf_rating": confidence,
                        "subject_id": subject,
                        "expert_level": "expert" if subject < 10 else "naive",
                    }
                )
                trial_nr += 1
    return pd.DataFrame(rows)


def test_borowski2021_raw_data_reanalyses_with_its_protocol_and_no_other_flag(tmp_path: Path, capsys):
    """Their file is read as it is; under `--protocol borowski2021` every lab participant is kept and each
    condition's accuracy is the plain mean over participants of their main-trial accuracy (pandas on the raw
    file); the crowd study's catch rule would have dropped participant 12 from one condition."""
    raw = _borowski_raw(np.random.default_rng(3))
    path = tmp_path / "experiment_II_main_practice_catch_trials_preprocessed.csv"
    raw.to_csv(path, index=False)
    out = tmp_path / "report"
    assert main(["analyze", "--responses", str(path), "--protocol", "borowski2021", "--out", str(out)]) == 0
    assert "participants: 12, excluded 0, analyzed 12" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    main_rows = raw[(raw["trial_type"] == "main") & ~raw["catch_trial"]]
    by_hand = main_rows.groupby(["instr_type", "subject_id"])["correct"].mean().groupby("instr_type").mean()
    assert results["accuracy"]["Max-9/synthetic"]["mean"] == pytest.approx(by_hand["optimized"])
    assert results["accuracy"]["Max-9/natural"]["mean"] == pytest.approx(by_hand["natural"])
    assert results["accuracy"]["Max-9/natural"]["n_participants"] == 6
    assert set(results["accuracy_by_expertise"]["Max-9/natural"]) == {"expert", "lay"}
    crowd = analyze(path, tmp_path / "crowd", settings=FAST)  # the default protocol: zimmermann2021
    assert crowd["exclusion"]["criteria"]["catch_accuracy"]["participants"] == ["s12"]
    assert crowd["accuracy"]["Max-9/synthetic"]["n_participants"] == 5
