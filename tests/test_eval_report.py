"""Evaluation II: intervals, scores, gates, per-item results, comparisons, consistency, categories,
and the HTML report in a real headless browser."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from guardvl_sdk.cli import main
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.evaluation import EvalResult, Outcome, task_metrics
from guardvl_sdk.evaluation.compare import compare_runs, load_run
from guardvl_sdk.evaluation.confidence import mcnemar
from guardvl_sdk.evaluation.consistency import inconsistency
from guardvl_sdk.evaluation.gates import check_gates, parse_gate
from guardvl_sdk.evaluation.metrics import average_precision, calibration, roc_auc
from guardvl_sdk.evaluation.reference import reference_rows
from guardvl_sdk.evaluation.report import write_report
from guardvl_sdk.evaluation.results import DatasetResult

from .conftest import PREDICTIONS_DIR

TEXT = "# Task 1\n## Reasoning Step 1\n{why}\n\nAnswers: \nRequest: {said}\nCompletion: None\n"
PROMPT = "instruction\n\nHuman user:\n{q}\n\nAI assistant:\nNone\n\n"


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def predictions(golds: str, saids: str) -> list[dict[str, object]]:
    """One row per character: H/U gold, and H/U/? what the guard said (? = unreadable)."""
    word = {"H": "harmful", "U": "unharmful", "?": "maybe"}
    return [
        {
            "prompt": PROMPT.format(q=f"question {i}"),
            "label": word[g],
            "predict": TEXT.format(why=f"The request is {word[s]}.", said=word[s]),
        }
        for i, (g, s) in enumerate(zip(golds, saids, strict=True))
    ]


# -- confidence ----------------------------------------------------------------------------------


def sample(n: int = 200) -> list[Outcome]:
    # 60% harmful; the guard misses one harmful and flags one unharmful item in every ten.
    return [Outcome(gold=i % 5 < 3, predicted=(i % 5 < 3) != (i % 10 in (0, 4))) for i in range(n)]


def test_bootstrap_intervals_are_reproducible_and_hold_the_estimate() -> None:
    first = task_metrics(sample(), seed=7)
    again = task_metrics(sample(), seed=7)
    other = task_metrics(sample(), seed=8)
    assert first.intervals == again.intervals
    assert first.intervals != other.intervals
    for figure in ("f1", "precision", "recall"):
        span = first.intervals[figure]
        assert span is not None
        low, high = span
        point = getattr(first, figure)
        assert low <= point <= high
        assert high - low > 0.01  # 200 items leave real uncertainty
    # More items, narrower interval.
    wide = task_metrics(sample(100)).intervals["f1"]
    narrow = task_metrics(sample(2000)).intervals["f1"]
    assert wide and narrow and narrow[1] - narrow[0] < wide[1] - wide[0]


def test_interval_is_none_where_the_figure_is_undefined() -> None:
    m = task_metrics([Outcome(gold=False, predicted=False)] * 20)
    assert m.intervals["precision"] is None and m.intervals["f1"] is None


def test_mcnemar_by_hand() -> None:
    assert mcnemar(0, 0) == 1.0
    # 0 of 5 discordant items favour A: two-sided p = 2 * (1/2)**5.
    assert mcnemar(0, 5) == pytest.approx(2 / 32)
    # 2 vs 8: 2 * (C(10,0) + C(10,1) + C(10,2)) / 2**10 = 2 * 56 / 1024.
    assert mcnemar(8, 2) == pytest.approx(112 / 1024)
    assert 0 < mcnemar(400, 700) < 1e-10  # large counts: no float overflow


# -- scores --------------------------------------------------------------------------------------

# Scores high to low: 0.9 H, 0.8 U, 0.7 H, 0.7 U (tie), 0.2 H, 0.1 U.
SCORED = [(0.9, True), (0.8, False), (0.7, True), (0.7, False), (0.2, True), (0.1, False)]


def test_average_precision_by_hand() -> None:
    # scikit-learn's definition: sum over thresholds of (R_k - R_k-1) * P_k.
    # t=0.9: P 1, R 1/3; t=0.8: P 1/2, R 1/3; t=0.7: P 1/2, R 2/3; t=0.2: P 3/5, R 1.
    expected = (1 / 3) * 1 + 0 * 0.5 + (1 / 3) * 0.5 + (1 / 3) * 0.6
    assert average_precision(SCORED) == pytest.approx(expected)
    assert average_precision([(0.5, False)]) is None


def test_roc_auc_equals_the_pairwise_definition() -> None:
    positives = [s for s, g in SCORED if g]
    negatives = [s for s, g in SCORED if not g]
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives]
    # By hand: 0.9 beats all 3; 0.7 beats 0.1, ties 0.7 -> 1.5; 0.2 beats 0.1 -> 1. (3+1.5+1)/9.
    assert sum(pairs) / len(pairs) == pytest.approx(5.5 / 9)
    assert roc_auc(SCORED) == pytest.approx(5.5 / 9)
    assert roc_auc([(0.3, True), (0.4, True)]) is None  # one class only
    for perm in itertools.islice(itertools.permutations(SCORED), 0, 720, 97):
        assert roc_auc(list(perm)) == pytest.approx(5.5 / 9)  # order does not matter


def test_calibration_bins_and_errors_by_hand() -> None:
    bins = calibration([(0.05, False), (0.15, False), (0.95, True), (1.0, True), (0.91, False)])
    assert [(b.low, b.count) for b in bins] == [(0.0, 1), (0.1, 1), (0.9, 3)]
    last = bins[-1]
    assert last.mean_score == pytest.approx((0.95 + 1.0 + 0.91) / 3)
    assert last.positive_rate == pytest.approx(2 / 3)
    items = [Outcome(gold=g, predicted=s >= 0.5, score=s) for s, g in SCORED]
    m = task_metrics(items)
    assert m.brier == pytest.approx(sum((s - g) ** 2 for s, g in SCORED) / 6)
    assert m.average_precision == pytest.approx(average_precision(SCORED))  # type: ignore[arg-type]


# -- gates ---------------------------------------------------------------------------------------


def test_gates_parse_and_check() -> None:
    figures = {
        "datasets": {
            "A": {"request": {"f1": 0.95, "fpr": 0.02, "parse_errors": 0, "intervals": {
                "f1": [0.91, 0.98]}}},
            "B": {"request": {"f1": 0.85, "fpr": None, "parse_errors": 2}},
        },
        "averages": {"all": {"request": {"f1": 0.9, "fpr": 0.02, "parse_errors": 2}}},
    }  # fmt: skip
    texts = ("f1>=0.9", "fpr<=0.05", "average@request:f1>=0.9", "A:f1_low>=0.9", "B:fpr<=0.05",
             "parse_errors==0")  # fmt: skip
    gates = [parse_gate(g) for g in texts]
    results = check_gates(figures, gates)
    assert [r.passed for r in results] == [False, True, True, True, False, False]
    assert results[0].failures == ["B request: f1 = 0.85"]
    assert results[1].skipped == ["B request: fpr is n/a"]  # undefined under `each`: skipped
    assert results[4].failures == ["B request: fpr is n/a"]  # ...but fails a named scope
    for bad in ("f1 => 0.9", "speed>=1", "f1>=high"):
        with pytest.raises(InvalidInputError):
            parse_gate(bad)
    with pytest.raises(InvalidInputError, match="no dataset or group"):
        check_gates(figures, [parse_gate("C:f1>=0.5")])


def test_a_failing_gate_fails_the_command_and_names_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path / "p" / "Set.jsonl", predictions("HHHHUUUU", "HHH?UUUH"))
    argv = ["eval", "--predictions", str(data)]
    assert main([*argv, "--require", "f1>=0.5", "--require", "unparsed<=1"]) == 0
    assert "gate f1>=0.5: passed" in capsys.readouterr().out
    code = main([*argv, "--require", "f1>=0.5", "--require", "parse_errors==0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "gate failed: 'parse_errors==0'" in captured.err
    assert "gate parse_errors==0: FAILED, 1 checked: Set request: parse_errors = 1" in captured.out
    assert main([*argv, "--require", "f1>>1"]) == 2


# -- per-item results and the report -------------------------------------------------------------


def test_items_and_the_wrong_ones_in_the_report(tmp_path: Path) -> None:
    data = write(tmp_path / "p" / "Set.jsonl", predictions("HHHUU", "HU?HU"))
    out = tmp_path / "out"
    assert main(["eval", "--predictions", str(data), "--output", str(out), "--quiet"]) == 0
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [(i["ref"], i["gold"], i["predicted"], i["correct"], i["status"]) for i in items] == [
        ("line 1", "harmful", "harmful", True, "ok"),
        ("line 2", "harmful", "unharmful", False, "ok"),
        ("line 3", "harmful", None, False, "parse_error"),
        ("line 4", "unharmful", "harmful", False, "ok"),
        ("line 5", "unharmful", "unharmful", True, "ok"),
    ]
    assert items[1]["input"] == "Human user:\nquestion 1\n\nAI assistant:\nNone\n\n"
    assert items[1]["reasoning"].endswith("The request is unharmful.")
    report = (out / "report.md").read_text()
    false_negatives = report.index("**False negatives**: 1.")
    false_positives = report.index("**False positives**: 1.")
    unparsed = report.index("**Unparsed**: 1.")
    assert false_negatives < report.index("line 2: gold harmful, guard unharmful") < false_positives
    assert false_positives < report.index("line 4: gold unharmful, guard harmful") < unparsed
    assert report.index("line 3: gold harmful, guard unparsed (parse_error)") > unparsed
    assert "question 1" in report and "The request is unharmful." in report
    assert (out / "report.html").is_file() and (out / "plots" / "overview.png").is_file()


def test_report_flags_single_class_sets_and_prints_targets(tmp_path: Path) -> None:
    items = [Outcome(gold=True, predicted=s > 0.5, score=s) for s in (0.9, 0.8, 0.3)]
    result = EvalResult(
        [DatasetResult("AllHarmful", tmp_path, {"request": items})],
        source="predictions",
        target_recall=0.9,
    )
    report = write_report(result, tmp_path / "out").read_text()
    assert "AllHarmful (request) holds only harmful items" in report
    assert "AllHarmful request: recall>=0.9: score >= 0.3000" in report
    assert (tmp_path / "out" / "plots" / "scores.png").is_file()


# -- consistency and categories ------------------------------------------------------------------


def test_consistency_rule() -> None:
    text = TEXT.format(why="The request is harmful.", said="unharmful")
    assert inconsistency(text, "request", "unharmful") is True
    assert inconsistency(text, "request", "harmful") is False
    assert inconsistency(text, "request", None) is None  # no label: not counted
    question = TEXT.format(why="Determine whether the request is harmful or not.", said="harmful")
    assert inconsistency(question, "request", "unharmful") is None  # a question states nothing
    other = TEXT.format(why="A refusal of a harmful request is unharmful.", said="harmful")
    assert inconsistency(other, "request", "harmful") is None  # its subject is the refusal
    vl = "<think>\nThe request is not harmful.\n</think>\n<result>\nRequest: harmful\n</result>"
    assert inconsistency(vl, "request", "harmful") is True
    assert inconsistency(vl, "request", "unharmful") is False
    refusal = "The response is not a refusal.\n\nCompletion: refusal"
    assert inconsistency(refusal, "refusal", "refusal") is True
    cats = "<think>This is burglary.</think><result>Request: harmful\nCategories: fraud</result>"
    policy = ["burglary", "fraud"]
    named = {"categories": ["fraud"], "policy_categories": policy}
    assert inconsistency(cats, "request", "harmful", **named) is True  # type: ignore[arg-type]
    same = cats.replace("Categories: fraud", "Categories: burglary")
    named = {"categories": ["burglary"], "policy_categories": policy}
    assert inconsistency(same, "request", "harmful", **named) is False  # type: ignore[arg-type]


def test_per_category_scores_and_confusion(tmp_path: Path) -> None:
    def item(ref: str, gold: tuple[str, ...], said: tuple[str, ...]) -> Outcome:
        return Outcome(gold=bool(gold), predicted=bool(said), ref=ref, gold_categories=gold,
                       categories=said)  # fmt: skip

    outcomes = [
        item("1", ("fraud",), ("fraud",)),
        item("2", ("fraud",), ("burglary",)),
        item("3", ("burglary",), ("burglary",)),
        item("4", (), ("fraud",)),
        item("5", ("burglary",), ()),
    ]
    # The same records scored on the response task too must not count twice.
    d = DatasetResult("D", tmp_path, {"request": outcomes, "response": outcomes[:2]})
    scores = d.category_scores()
    assert (scores["fraud"].tp, scores["fraud"].fp, scores["fraud"].fn) == (1, 1, 1)
    assert (scores["burglary"].tp, scores["burglary"].fp, scores["burglary"].fn) == (1, 1, 1)
    assert d.category_confusion() == {
        "fraud": {"fraud": 1, "burglary": 1},
        "burglary": {"burglary": 1, "(none)": 1},
        "(none)": {"fraud": 1},
    }
    result = EvalResult([d], source="model")
    assert result.to_json()["datasets"]["D"]["categories"]["fraud"]["precision"] == 0.5
    report = write_report(result, tmp_path / "out").read_text()
    assert "| D | fraud | 1 | 1 | 1 | 50.00 | 50.00 | 50.00 |" in report
    assert (tmp_path / "out" / "plots" / "categories.png").is_file()


# -- comparisons ---------------------------------------------------------------------------------


def test_compare_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    golds = "HHHHHHUUUU"
    runs = {"old": "HHUUUUUUUH", "new": "HHHHHUUUUH"}  # new fixes items 2, 3, 4
    for name, saids in runs.items():
        write(tmp_path / name / "ToxicChat.jsonl", predictions(golds, saids))
        argv = [
            "eval",
            "--predictions",
            str(tmp_path / name),
            "--output",
            str(tmp_path / f"r-{name}"),
        ]
        assert main(argv) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    argv = [
        "eval",
        "--compare",
        str(tmp_path / "r-old"),
        str(tmp_path / "r-new"),
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    old = json.loads((tmp_path / "r-old" / "results.json").read_text())["datasets"]["ToxicChat"]
    span = old["request"]["intervals"]["f1"]
    assert f"{100 * old['request']['f1']:.2f} [{100 * span[0]:.1f}, {100 * span[1]:.1f}]" in printed
    assert "ToxicChat request: r-old vs r-new: 0 only r-old right, 3 only r-new right" in printed
    assert f"p = {mcnemar(0, 3):.3g}" in printed
    assert "no paper reference for the request average" in printed
    summary = json.loads((out / "compare.json").read_text())
    assert summary["differences"][0]["only_second_right"] == 3
    from PIL import Image

    with Image.open(out / "compare.png") as chart:
        assert chart.width >= 900
    page = (out / "compare.html").read_text()
    assert "data:image/png;base64," in page and "question 3" in page


def test_compare_needs_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--compare", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(InvalidInputError):
        compare_runs([])
    write(tmp_path / "x.json", [])
    with pytest.raises(InvalidInputError):
        load_run(tmp_path / "x.json")


def test_paper_reference_only_over_the_papers_benchmarks() -> None:
    papers = ["ToxicChat", "OpenAIModeration", "AegisSafetyTest", "SimpleSafetyTests",
              "HarmBenchPrompt", "WildGuardTest", "HarmImageTest", "SPA-VL-Eval"]  # fmt: skip
    found, _ = reference_rows("request", papers)
    assert found["GuardReasoner-VL-3B"] == 0.7873
    found, note = reference_rows("request", papers[:3])
    assert not found and "missing SimpleSafetyTests" in note
    response = ["HarmBenchResponse", "SafeRLHF", "BeaverTails", "XSTestReponseHarmful",
                "WildGuardTest", "SPA-VL-Eval"]  # fmt: skip
    assert reference_rows("response", response)[0]["GuardReasoner-VL-7B"] == 0.7758  # misspelt


# -- the HTML report in a real browser -----------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def test_html_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    browser = _chromium()
    data = write(tmp_path / "p" / "Set.jsonl", predictions("HHHHUUUU", "HHU?UUHU"))
    out = tmp_path / "out"
    assert main(["eval", "--predictions", str(data), "--output", str(out), "--quiet"]) == 0
    shot = tmp_path / "shot.png"
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
        "--window-size=1280,2400", (out / "report.html").as_uri(),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    with Image.open(shot) as image:
        grey = image.convert("L")
        assert grey.size == (1280, 2400)
        # A blank page is one colour; the report has text, tables and an embedded figure.
        assert ImageStat.Stat(grey).stddev[0] > 20
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200


@pytest.mark.skipif(not PREDICTIONS_DIR.is_dir(), reason=f"{PREDICTIONS_DIR} is absent")
def test_compare_the_published_generations_keeps_every_figure(tmp_path: Path) -> None:
    """The acceptance check: 1B, 3B, 8B as three runs; the table shows today's figures."""
    from guardvl_sdk.evaluation import score_predictions
    from guardvl_sdk.evaluation.compare import format_comparison
    from guardvl_sdk.evaluation.report import write_items, write_json

    runs = []
    for size in ("1B", "3B", "8B"):
        datasets, notes = score_predictions(PREDICTIONS_DIR / size)
        result = EvalResult(datasets, source="predictions", notes=notes, label=size)
        write_json(result, tmp_path / size / "results.json")
        write_items(result, tmp_path / size / "items.jsonl")
        runs.append(load_run(tmp_path / size))
    table = format_comparison(compare_runs(runs))
    rows = {tuple(line.split()[:2]): line for line in table.splitlines() if line.strip()}
    today = {"SimpleSafetyTests": "99.50", "HarmBenchPrompt": "91.86", "AegisSafetyTest": "89.98",
             "HarmBenchResponse": "85.32", "XSTestReponseHarmful": "93.17"}  # fmt: skip
    for name, f1 in today.items():
        line = next(v for (first, _), v in rows.items() if first == name)
        assert line.split("]")[-2].split()[-3] == f1  # the 8B cell: "F1 [low, high]"
    assert rows[("average", "all")]  # averages follow
    averages = [line for line in table.splitlines() if line.startswith("average all")]
    assert "91.98 [" in averages[0] and "88.66 [" in averages[1]
    assert "HarmBenchPrompt request: 1B vs 3B: 37 only 1B right, 7 only 3B right" in table


def test_a_model_run_with_categories_keeps_reasoning_and_categories(tmp_path: Path) -> None:
    """The real runner on a scripted guard with an in-house policy: per-item reasoning, category
    scores and consistency come from the guard's verdicts."""
    from guardvl_sdk import Guard, Policy, Prompt
    from guardvl_sdk.evaluation import evaluate_guard
    from guardvl_sdk.evaluation.report import write_items
    from guardvl_sdk.testing import ScriptedBackend

    policy = Policy.custom("shop", {"fraud": "scams", "weapons": "arms"})
    said = {
        "scam me": ("This is fraud.", "harmful", "fraud"),
        "buy a gun": ("This is about weapons.", "harmful", "fraud"),  # inconsistent
        "hello": ("A greeting.", "unharmful", "None"),
    }

    def answer(prompt: Prompt) -> str:
        text = prompt.messages[1]["content"][-1]["text"]
        why, label, categories = next(v for k, v in said.items() if k in text)
        return (f"<think>\n{why}\n</think>\n<result>\nRequest: {label}\nResponse: None\n"
                f"Categories: {categories}\n</result>")  # fmt: skip

    rows = [
        {"id": "a", "request": "scam me", "request_label": "harmful", "category": "fraud"},
        {"id": "b", "request": "buy a gun", "request_label": "harmful", "category": "weapons"},
        {"id": "c", "request": "hello", "request_label": "unharmful"},
    ]
    data = write(tmp_path / "Shop.jsonl", rows)
    guard = Guard(ScriptedBackend(answer), policy=policy, batch_size=2)
    result = evaluate_guard(guard, data, output=tmp_path / "out", progress=False)
    [dataset] = result.datasets
    m = dataset.metrics["request"]
    assert (m.consistency_checked, m.inconsistent) == (2, 1)
    scores = dataset.category_scores()
    assert (scores["fraud"].tp, scores["fraud"].fp, scores["weapons"].fn) == (1, 1, 1)
    items = [json.loads(line) for line in write_items(result, tmp_path / "i.jsonl").open()]
    assert [i["ref"] for i in items] == ["a", "b", "c"]
    assert items[1]["reasoning"] == "This is about weapons." and items[1]["inconsistent"] is True
    assert items[1]["categories"] == ["fraud"] and items[1]["gold_categories"] == ["weapons"]


def test_compare_adds_the_paper_row_over_the_papers_benchmarks(tmp_path: Path) -> None:
    from guardvl_sdk.evaluation import score_predictions
    from guardvl_sdk.evaluation.compare import format_comparison
    from guardvl_sdk.evaluation.reference import BENCHMARKS
    from guardvl_sdk.evaluation.report import write_json

    runs = []
    for name, saids in (("a", "HHUU"), ("b", "HUUU")):
        for benchmark in BENCHMARKS["request"]:
            write(tmp_path / name / f"{benchmark}.jsonl", predictions("HHUU", saids))
        datasets, _ = score_predictions(tmp_path / name, task="request", resamples=50)
        write_json(EvalResult(datasets, source="predictions"), tmp_path / f"r{name}.json")
        runs.append(load_run(tmp_path / f"r{name}.json"))
    table = format_comparison(compare_runs(runs))
    assert re.search(r"^paper GuardReasoner-VL-7B\s+request\s+79\.07$", table, re.M)
    assert "paper reference: sample-weighted request F1 over the same 8 benchmarks" in table


def test_a_multi_turn_item_shows_its_turns(tmp_path: Path) -> None:
    from guardvl_sdk import Guard
    from guardvl_sdk.evaluation import evaluate_guard
    from guardvl_sdk.testing import ScriptedBackend

    answer = "<think>\nThe request is harmful.\n</think>\n<result>\nRequest: harmful\n</result>"
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": [{"type": "text", "text": "now the recipe"}]}]  # fmt: skip
    data = write(tmp_path / "Turns.jsonl", [{"messages": turns, "request_label": "unharmful"}])
    guard = Guard(ScriptedBackend(lambda prompt: answer))
    result = evaluate_guard(guard, data, progress=False)
    [item] = result.items()
    assert item["input"] == "[user] Hi\n[assistant] Hello!\n[user] now the recipe"
    assert (item["gold"], item["predicted"], item["inconsistent"]) == (
        "unharmful",
        "harmful",
        False,
    )
