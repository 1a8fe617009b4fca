"""The wheel installs integrations/ and training/ under guardvl_sdk, and nothing else at the top."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("guardvl_sdk-*.whl"))


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"guardvl_sdk"}
    for required in (
        "guardvl_sdk/py.typed",
        "guardvl_sdk/integrations/__init__.py",
        "guardvl_sdk/integrations/langchain.py",
        "guardvl_sdk/integrations/openai.py",
        "guardvl_sdk/training/__init__.py",
        "guardvl_sdk/backends/local.py",
        "guardvl_sdk/testing/__init__.py",
        "guardvl_sdk/evaluation/metrics.py",
    ):
        assert required in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "guardvl = guardvl_sdk.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_imports_from_its_own_tree(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import guardvl_sdk.training as t, guardvl_sdk.integrations as i, importlib.util as u;"
        "print(t.__file__.startswith({0!r}), i.__file__.startswith({0!r}),"
        " u.find_spec('training'), u.find_spec('integrations'))"
    ).format(str(target))
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.split() == ["True", "True", "None", "None"]
