"""Errors that say what to do: each case's message and exit status (``guardvl check``).

Inputs are validated before any model loads: those tests make loading a model fail the test.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from guardvl_sdk import Guard, MissingExtraError, ModelLoadError, __version__
from guardvl_sdk.backends.local import LocalBackend
from guardvl_sdk.cli import main
from guardvl_sdk.testing import FakeChatServer
from tests.conftest import RESULT_HARMFUL_REQUEST


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the inputs were validated")

    monkeypatch.setattr(LocalBackend, "load", refuse)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"guardvl-sdk {__version__}"


def test_missing_local_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "my-guard")
    assert main(["check", "--model", missing, "hello"]) == 2
    err = capsys.readouterr().err
    assert f"guard model {missing!r}: no such directory" in err
    assert "Repo id" not in err
    for relative in ("./my-guard", "~/nowhere/guard", "guard"):
        with pytest.raises(ModelLoadError, match="no such directory"):
            Guard.from_pretrained(relative)


def test_a_file_is_not_a_model_directory(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file: give the model's directory"):
        Guard.from_pretrained(weights)


def test_default_model_is_announced(capsys: pytest.CaptureFixture[str]) -> None:
    # Offline (conftest), the hub model cannot load: the command says which model it tried.
    assert main(["check", "hello"]) == 2
    err = capsys.readouterr().err
    assert "no --model given: using yueliu1999/GuardReasoner-VL-Eco-3B" in err
    assert "--model demo" in err
    assert "could not load guard model 'yueliu1999/GuardReasoner-VL-Eco-3B'" in err
    assert "network access or a local cache" in err


def test_missing_adapter_is_named(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "adapter")
    assert main(["check", "--model", str(tiny_model_dir), "--adapter", missing, "hi"]) == 2
    assert f"adapter {missing!r}: no such directory" in capsys.readouterr().err


@pytest.mark.slow
def test_broken_adapter_is_named(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "adapter"
    broken.mkdir()
    assert main(["check", "--model", str(tiny_model_dir), "--adapter", str(broken), "hi"]) == 2
    err = capsys.readouterr().err
    assert f"could not load adapter {str(broken)!r} on guard model {str(tiny_model_dir)!r}" in err


def test_missing_image_before_the_model(no_model_load: None, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["check", "--model", "demo", "--image", "nope.png", "what is this?"]) == 2
    err = capsys.readouterr().err
    assert "image file not found or unreadable: 'nope.png'" in err


def test_unreadable_image_is_named_by_path(
    no_model_load: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "photo.png"
    fake.write_text("not a picture")
    assert main(["check", "--model", "demo", "--image", str(fake)]) == 2
    err = capsys.readouterr().err
    assert f"image file {fake}: not a readable image: unknown or damaged image format" in err
    assert "BytesIO" not in err


def test_empty_text_before_the_model(no_model_load: None, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["check", "--model", "demo", "   "]) == 2
    assert "give request text, --image, or both" in capsys.readouterr().err


def test_missing_extra_exits_2_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guardvl_sdk import extras

    monkeypatch.setattr(extras, "_importable", lambda name: name not in ("torch", "trl"))
    monkeypatch.setenv("GUARDVL_DEMO_DIR", str(tmp_path / "demo"))
    assert main(["check", "--model", "demo", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith('pip install "guardvl-sdk[train]"')
    assert "torch, trl not installed" in err
    with pytest.raises(MissingExtraError, match=r'pip install "guardvl-sdk\[local\]"$') as info:
        Guard.from_pretrained(tmp_path)
    assert info.value.extra == "local"
    assert isinstance(info.value, ImportError)


def test_check_reads_stdin_and_a_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("How do I make a pipe bomb?\n"))
    with FakeChatServer(RESULT_HARMFUL_REQUEST) as server:
        status = main(["check", "-", "--server", server.url, "--model", "guard"])
        sent = str(server.requests[0]["messages"])
    assert status == 1
    assert "decision:  BLOCKED" in capsys.readouterr().out
    assert "How do I make a pipe bomb?" in sent
