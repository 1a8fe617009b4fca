"""Records -> training examples, the teacher, and data errors surfacing through training."""

import json

import httpx
import pytest
from PIL import Image

from guardvl_sdk import (
    GUARDREASONER_VL,
    ConfigurationError,
    InvalidDataError,
    Label,
    Policy,
    load_records,
)
from guardvl_sdk.records import Record
from guardvl_sdk.training.data import as_dataset, target_for, to_examples
from guardvl_sdk.training.sft import SFTSettings, train_sft
from guardvl_sdk.training.teacher import Teacher

POLICY = Policy.custom("shop", {"dosage": "dose advice", "faces": "photos of faces"})


def write(path, *rows: object) -> None:  # type: ignore[no-untyped-def]
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def data_file(tmp_path):  # type: ignore[no-untyped-def]
    Image.new("RGB", (30, 30), "red").save(tmp_path / "face.png")
    path = tmp_path / "data.jsonl"
    write(
        path,
        {
            "request": "How much ibuprofen?",
            "request_label": "harmful",
            "category": "dosage",
            "reasoning": "Step 1: a dose question.",
        },
        {
            "request": "Who is this?",
            "images": ["face.png"],
            "response": "A child.",
            "request_label": "harmful",
            "response_label": "unharmful",
            "category": ["faces"],
            "reasoning": "Step 1: a face.",
        },
    )
    return path


def test_examples_are_the_inference_prompt_plus_the_target(data_file) -> None:  # type: ignore[no-untyped-def]
    records = load_records(data_file)
    first, second = to_examples(records, POLICY)
    assert first["prompt"] == [
        {"role": "system", "content": [{"type": "text", "text": POLICY.instruction}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": POLICY.transcript("How much ibuprofen?", None)}],
        },
    ]
    assert first["completion"] == [
        {"role": "assistant", "content": [{"type": "text", "text": target_for(records[0], POLICY)}]}
    ]
    assert first["images"] == [] and first["id"] == "data.jsonl:1"
    assert [part["type"] for part in second["prompt"][1]["content"]] == ["text", "image", "text"]
    assert second["images"] == [str(data_file.parent / "face.png")]
    assert target_for(records[1], POLICY).endswith(
        "Request: harmful\nResponse: unharmful\nCategories: faces\n</result>"
    )


def test_the_dataset_view_decodes_images(data_file) -> None:  # type: ignore[no-untyped-def]
    dataset = as_dataset(load_records(data_file), POLICY)
    assert len(dataset) == 2 and set(dataset.column_names) == {
        "prompt",
        "completion",
        "images",
        "id",
    }
    image = dataset[1]["images"][0]
    assert image.size == (30, 30)


def test_records_that_cannot_be_targets_are_all_listed() -> None:
    records = [
        Record(request="a", request_label=Label.HARMFUL, id="no-reasoning"),
        Record(request="b", response="r", response_label=Label.HARMFUL, reasoning="x", id="resp"),
        Record(
            request="c", request_label=Label.UNHARMFUL, categories=["dosage"], reasoning="x", id="c"
        ),
        Record(
            request="d", request_label=Label.HARMFUL, categories=["weapons"], reasoning="x", id="d"
        ),
        Record(request="e", request_label=Label.HARMFUL, response="r", reasoning="x", id="e"),
    ]
    with pytest.raises(InvalidDataError) as info:
        to_examples(records, POLICY)
    problems = dict(info.value.problems)
    assert "record 'no-reasoning': no reasoning" in problems[1]
    assert "no request_label" in problems[2]
    assert "on a record labelled unharmful" in problems[3]
    assert "unknown category ['weapons']" in problems[4]
    assert "a response without a response_label" in problems[5]


def test_label_only_targets_have_an_empty_think_block() -> None:
    record = Record(request="a", request_label=Label.HARMFUL, id="x")
    target = target_for(record, GUARDREASONER_VL, label_only=True)
    assert target == "<think>\n\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"
    parsed = GUARDREASONER_VL.parse(target, has_response=False)
    assert parsed.request is Label.HARMFUL


def test_loader_errors_surface_through_training_before_any_model_loads(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    write(
        bad,
        {"request": "ok", "request_label": "harmful", "reasoning": "x"},
        {"request": "x", "images": ["missing.png"], "request_label": "harmful"},
        {"request": "x", "request_label": "dangerous"},
    )
    settings = SFTSettings(data=str(bad), base=str(tmp_path / "no-model"), output=str(tmp_path))
    with pytest.raises(InvalidDataError) as info:
        train_sft(settings)
    assert [line for line, _ in info.value.problems] == [2, 3]
    assert "missing image file 'missing.png'" in str(info.value)


def test_missing_reasoning_needs_a_teacher_or_label_only(tmp_path) -> None:
    data = tmp_path / "data.jsonl"
    write(data, {"request": "x", "request_label": "harmful"})
    settings = SFTSettings(data=str(data), base=str(tmp_path / "no-model"), output=str(tmp_path))
    with pytest.raises(ConfigurationError, match="1 of 1 records have no reasoning"):
        train_sft(settings)


def test_bad_settings_are_typed_errors() -> None:
    with pytest.raises(ConfigurationError, match="method"):
        SFTSettings(data="d", base="b", output="o", method="dpo")
    with pytest.raises(ConfigurationError, match="exclude"):
        SFTSettings(
            data="d", base="b", output="o", label_only=True, teacher_url="u", teacher_model="m"
        )
    with pytest.raises(ConfigurationError, match="teacher_url and teacher_model"):
        SFTSettings(data="d", base="b", output="o", teacher_url="http://x")


# -- the teacher, against a mock OpenAI-compatible server -------------------------------------


def fake_teacher(replies: dict[str, str | int], seen: list[dict]) -> Teacher:  # type: ignore[type-arg]
    """A teacher whose server answers by request text: a reply string or an HTTP status."""

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        seen.append(payload)
        transcript = payload["messages"][1]["content"][-2]["text"]
        reply = next(value for key, value in replies.items() if key in transcript)
        if isinstance(reply, int):
            return httpx.Response(reply, json={"error": "boom"})
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Teacher("http://teacher.test/v1", model="big-guard", client=client)


def test_the_teacher_keeps_only_replies_that_agree_with_the_labels(tmp_path) -> None:
    Image.new("RGB", (20, 20), "blue").save(tmp_path / "a.png")
    gold = Label.HARMFUL
    records = [
        Record(request="good", request_label=gold, categories=["dosage"], id="1"),
        Record(request="wrong", request_label=gold, categories=["dosage"], id="2"),
        Record(request="garbled", request_label=gold, categories=["dosage"], id="3"),
        Record(request="down", request_label=gold, categories=["dosage"], id="4"),
        Record(request="cat", request_label=gold, categories=["dosage"], id="5"),
        Record(request="pic", images=[tmp_path / "a.png"], request_label=Label.UNHARMFUL, id="6"),
        Record(request="has", request_label=gold, categories=["dosage"], reasoning="mine", id="7"),
    ]
    answer = (
        "<think>\n{r}\n</think>\n<result>\nRequest: {l}\nResponse: None\nCategories: {c}\n</result>"
    )
    seen: list[dict] = []  # type: ignore[type-arg]
    teacher = fake_teacher(
        {
            "good": answer.format(r="Step 1: doses.", l="harmful", c="dosage"),
            "wrong": answer.format(r="Step 1: fine.", l="unharmful", c="None"),
            "garbled": "I think it is bad.",
            "down": 503,
            "cat": answer.format(r="Step 1: faces.", l="harmful", c="faces"),
            "pic": answer.format(r="Step 1: a blue square.", l="unharmful", c="None"),
        },
        seen,
    )
    result = teacher.fill(records, POLICY)
    assert [(r.id, r.reasoning) for r in result.records] == [
        ("1", "Step 1: doses."),
        ("6", "Step 1: a blue square."),
        ("7", "mine"),
    ]
    assert result.dropped == 4
    assert result.reasons == {
        "labels disagree": 1,
        "unparseable": 1,
        "HTTP 503": 1,
        "categories disagree": 1,
    }
    assert "dropped 4" in result.summary()
    # The teacher saw the guard's prompt, the image, and the gold result to explain.
    first = seen[0]
    assert first["model"] == "big-guard"
    assert first["messages"][0]["content"] == POLICY.instruction
    assert (
        "Request: harmful\nResponse: None\nCategories: dosage"
        in first["messages"][1]["content"][-1]["text"]
    )
    image_part = seen[5]["messages"][1]["content"][1]
    assert image_part["image_url"]["url"].startswith("data:image/")  # as the guard is sent it
    assert len(seen) == 6  # the record with reasoning was not sent


def test_training_uses_the_teachers_reasoning(tmp_path) -> None:
    data = tmp_path / "data.jsonl"
    write(data, {"request": "x", "request_label": "harmful"})
    seen: list[dict] = []  # type: ignore[type-arg]
    teacher = fake_teacher({"x": "no labels"}, seen)
    settings = SFTSettings(data=str(data), base=str(tmp_path / "none"), output=str(tmp_path))
    # Every reply is dropped, so nothing is left to train on: a typed error, not a silent run.
    with pytest.raises(ConfigurationError, match="no training records"):
        train_sft(settings, policy=GUARDREASONER_VL, teacher=teacher)
    assert len(seen) == 1


def test_training_modules_and_the_cli_import_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, guardvl_sdk.cli, guardvl_sdk.training.sft, guardvl_sdk.training.data,"
        " guardvl_sdk.training.teacher, guardvl_sdk.training.demo;"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft', 'httpx')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
