"""The declared floors of openai and langchain-core are real: the adapter tests pass on them.

The floors are read from pyproject.toml, those exact versions are installed into a directory put
first on ``PYTHONPATH`` (everything else stays at the versions under test), and the OpenAI and
LangChain adapter tests run against them in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _floor(extra: str, package: str) -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["optional-dependencies"][extra]:
        match = re.fullmatch(rf"{package}>=([\w.]+)", requirement)
        if match:
            return match.group(1)
    raise AssertionError(f"no {package}>= floor in the [{extra}] extra")


def test_adapters_pass_on_the_declared_minimums(tmp_path: Path) -> None:
    pins = [f"openai=={_floor('openai', 'openai')}"]
    pins.append(f"langchain-core=={_floor('langchain', 'langchain-core')}")
    target = tmp_path / "floors"
    install = ["install", "-q", "--no-deps", "--target", str(target), *pins]
    subprocess.run([sys.executable, "-m", "pip", *install], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    code = "import openai, langchain_core; print(openai.__version__, langchain_core.__version__)"
    versions = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    found = [Version(v) for v in versions.stdout.split()]
    assert found == [Version(pin.split("==")[1]) for pin in pins]
    tests = ["tests/test_openai.py", "tests/test_langchain.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
