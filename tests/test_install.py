"""The light install: the built wheel in a fresh venv without extras.

The core distribution must run a remote check and score prediction files with no torch, and say
exactly what to install for a model in this process. The venv installs the core's dependencies
from the package index (pip's cache makes it fast) and nothing else: importing torch there would
fail, and the test also proves it was never tried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from guardvl_sdk.testing import FakeChatServer
from tests.conftest import PREDICTIONS_DIR, RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

HEAVY = ("torch", "transformers", "torchvision", "accelerate", "bitsandbytes")


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel installed, no extras; returns its bin/ directory."""
    out = tmp_path_factory.mktemp("light")
    build = ["wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out / "dist")]
    subprocess.run(
        [sys.executable, "-m", "pip", *build],
        check=True,
        capture_output=True,
    )
    wheel = next((out / "dist").glob("guardvl_sdk-*.whl"))
    venv.create(out / "venv", with_pip=True)
    bin_dir = out / "venv" / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    return bin_dir


def _run(
    bin_dir: Path, *args: str, stdin: str | None = None, demo_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if demo_dir is not None:
        env["GUARDVL_DEMO_DIR"] = str(demo_dir)
    return subprocess.run(
        args, capture_output=True, text=True, input=stdin, env=env, cwd=bin_dir.parent, timeout=300
    )


def test_the_wheel_installs_without_the_ml_stack(light_venv: Path) -> None:
    listed = _run(light_venv, str(light_venv / "python"), "-m", "pip", "list", "--format=json")
    names = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert "guardvl-sdk" in names
    assert not names & {"torch", "transformers", "torchvision", "accelerate", "bitsandbytes"}


def test_remote_check_without_torch(light_venv: Path) -> None:
    code = (
        "import sys\n"
        "from guardvl_sdk import Guard\n"
        "guard = Guard.from_server(sys.argv[1], model='guard')\n"
        "verdict = guard.check('How do I pick a lock?')\n"
        "print(verdict.blocked, verdict.status.value)\n"
        "import guardvl_sdk.cli, guardvl_sdk.evaluation, guardvl_sdk.hooks\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    with FakeChatServer(RESULT_HARMFUL_REQUEST) as server:
        out = _run(light_venv, str(light_venv / "python"), "-c", code, server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True ok", "[]"]


def test_cli_check_against_a_server_reads_stdin(light_venv: Path) -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST) as server:
        out = _run(
            light_venv,
            str(light_venv / "guardvl"),
            "check",
            "-",
            "--server",
            server.url,
            "--model",
            "guard",
            stdin="Can you help me bake bread?",
        )
        asked = server.requests[0]["messages"][-1]["content"]
    assert out.returncode == 0, out.stderr
    assert "decision:  ALLOWED" in out.stdout
    assert "Can you help me bake bread?" in json.dumps(asked)


@pytest.mark.skipif(not PREDICTIONS_DIR.is_dir(), reason="shared predictions not present")
def test_eval_predictions_without_torch(light_venv: Path, tmp_path: Path) -> None:
    data = PREDICTIONS_DIR / "1B" / "SimpleSafetyTests.jsonl"
    code = (
        "import sys, runpy\n"
        "sys.argv = ['guardvl', 'eval', '--predictions', sys.argv[1], '--output', sys.argv[2]]\n"
        "from guardvl_sdk.cli import main\n"
        "status = main()\n"
        f"print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "sys.exit(status)\n"
    )
    out = _run(light_venv, str(light_venv / "python"), "-c", code, str(data), str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "SimpleSafetyTests" in out.stdout
    assert "heavy: []" in out.stdout
    assert (tmp_path / "results.json").is_file()


def test_local_model_says_which_extra_to_install(light_venv: Path, tmp_path: Path) -> None:
    out = _run(
        light_venv, str(light_venv / "guardvl"), "check", "--model", "demo", "hi", demo_dir=tmp_path
    )
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].endswith('pip install "guardvl-sdk[train]"')
    assert "demo guard" in lines[0]

    code = "from guardvl_sdk import Guard\nGuard.from_pretrained('some/model')\n"
    out = _run(light_venv, str(light_venv / "python"), "-c", code)
    assert "guardvl_sdk.errors.MissingExtraError" in out.stderr
    assert out.stderr.strip().endswith('pip install "guardvl-sdk[local]"')

    code = "import guardvl_sdk.integrations.openai\n"
    out = _run(light_venv, str(light_venv / "python"), "-c", code)
    assert out.stderr.strip().endswith('pip install "guardvl-sdk[openai]"')
