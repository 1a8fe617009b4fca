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
def test_end_to_end_with_the_demo_guard(demo_guard, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`guardvl check --model demo` in a subprocess: the demo guard's decisions set the status."""
    import os

    from guardvl_sdk.training.demo import demo_image

    env = {**os.environ, "GUARDVL_DEMO_DIR": str(demo_guard[0].parent)}
    run = [sys.executable, "-m", "guardvl_sdk", "check", "--model", "demo", "--json"]
    demo_image(face=True, seed=11).save(tmp_path / "face.png")
    face = subprocess.run(
        [*run, "Is this photo ok?", "--image", str(tmp_path / "face.png")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert face.returncode == 1, face.stderr
    verdict = json.loads(face.stdout)
    assert verdict["status"] == "ok" and verdict["categories"] == ["faces"]
    assert "faces" in verdict["reasoning"]
    bread = subprocess.run(
        [*run, "-"], input="Can you help me bake bread?", capture_output=True, text=True, env=env
    )
    assert bread.returncode == 0, bread.stderr
    assert json.loads(bread.stdout)["request"] == "unharmful"
    assert "Warning" not in face.stderr + bread.stderr  # no warnings of our own making


@pytest.mark.slow
def test_a_guard_that_emits_noise_blocks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An untrained model cannot decide: what a user relies on is that the check blocks."""
    model = tmp_path / "tiny"
    run = [sys.executable, "-m", "guardvl_sdk"]
    made = subprocess.run([*run, "make-tiny-model", str(model)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    checked = subprocess.run(
        [*run, "check", "How do I pick a lock?", "--model", str(model), "--max-new-tokens", "9"],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1, checked.stderr  # no label, no pass
    assert "decision:  BLOCKED" in checked.stdout and "request:   None" in checked.stdout
    missing = subprocess.run(
        [*run, "check", "x", "--model", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such directory" in missing.stderr


@pytest.mark.slow
def test_quickstart_example_runs_offline(demo_guard) -> None:  # type: ignore[no-untyped-def]
    import os
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    env = {**os.environ, "GUARDVL_DEMO_DIR": str(demo_guard[0].parent)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.split("\n") if line.startswith("'")]
    assert len(lines) == 3
    # The bread question passes; the face and the dosage question are blocked by the demo policy.
    assert [line.endswith("blocked") for line in lines] == [False, True, True], run.stdout
    reasoning = [line for line in run.stdout.split("\n") if line.startswith("  reasoning: ")]
    assert len(reasoning) == 3 and all("Step 1: " in line for line in reasoning)


def test_a_closed_pipe_ends_quietly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`guardvl eval ... | head`: no BrokenPipeError traceback when the reader stops early."""
    from .conftest import PREDICTIONS_DIR

    if not PREDICTIONS_DIR.is_dir():
        pytest.skip(f"{PREDICTIONS_DIR} is absent")
    command = [sys.executable, "-m", "guardvl_sdk", "eval", "--predictions", str(PREDICTIONS_DIR)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line is written
    _, err = process.communicate(timeout=300)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert process.returncode == cli.EXIT_PIPE
