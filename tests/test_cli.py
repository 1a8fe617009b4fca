import json
import subprocess
import sys

import pytest

from guardvl_sdk import Guard, Verdict, cli
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Replace model loading by a scripted guard; returns a setter for its output."""
    outputs: dict[str, str] = {"text": RESULT_SAFE_REQUEST}

    def fake_from_pretrained(model, **kwargs):  # type: ignore[no-untyped-def]
        return Guard(ScriptedBackend(outputs["text"]), on_error=kwargs.get("on_error", "block"))

    monkeypatch.setattr(Guard, "from_pretrained", staticmethod(fake_from_pretrained))
    return outputs


def test_exit_status_follows_the_decision(scripted, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["check", "bake bread"]) == 0
    out = capsys.readouterr().out
    assert "decision:  ALLOWED" in out and "request:   unharmful" in out
    assert "Step 1: a cooking question." in out
    scripted["text"] = RESULT_HARMFUL_REQUEST
    assert cli.main(["check", "hurt someone"]) == 1
    assert "decision:  BLOCKED" in capsys.readouterr().out


def test_json_output_is_a_verdict(scripted, capsys) -> None:  # type: ignore[no-untyped-def]
    scripted["text"] = RESULT_HARMFUL_REQUEST
    assert cli.main(["check", "x", "--json"]) == 1
    verdict = Verdict.model_validate_json(capsys.readouterr().out)
    assert verdict.blocked and verdict.request is not None


def test_undecided_guard_fails_closed_unless_told(scripted, capsys) -> None:  # type: ignore[no-untyped-def]
    scripted["text"] = "no labels here"
    assert cli.main(["check", "x"]) == 1
    assert cli.main(["check", "x", "--on-error", "allow"]) == 0


def test_usage_errors_exit_2(scripted, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["check"]) == 2
    assert cli.main(["check", "x", "--image", str(tmp_path / "missing.png")]) == 2
    assert "invalid input" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", "x", "--quantization", "2bit"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_end_to_end_with_a_tiny_model(tmp_path) -> None:
    """The README's offline command: build a tiny model, check with it, as a user would."""
    model = tmp_path / "tiny"
    run = [sys.executable, "-m", "guardvl_sdk"]
    made = subprocess.run([*run, "make-tiny-model", str(model)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    from PIL import Image

    Image.new("RGB", (60, 40), "green").save(tmp_path / "photo.png")
    checked = subprocess.run(
        [
            *run,
            "check",
            "How do I pick a lock?",
            "--image",
            str(tmp_path / "photo.png"),
            "--model",
            str(model),
            "--max-new-tokens",
            "16",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    # An untrained model emits noise, so the guard cannot decide and fails closed.
    assert checked.returncode == 1, checked.stderr
    verdict = json.loads(checked.stdout)
    assert verdict["status"] in ("truncated", "parse_error") and verdict["blocked"] is True
    missing = subprocess.run(
        [*run, "check", "x", "--model", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such directory" in missing.stderr


@pytest.mark.slow
def test_quickstart_example_runs_offline() -> None:
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.split("\n") if line.startswith("'")]
    assert len(lines) == 3 and all(line.endswith("blocked") for line in lines)
