"""Every code block of README.md and docs/*.md runs as written.

Python blocks run in order, one namespace per page (a page reads as one script), in a scratch
directory that holds the two sample pictures the docs name (``door.jpg``, ``kitchen.jpg``), with
the demo guard this session trained as ``Guard.from_pretrained("demo")``. A block whose first
line is a visible marker is treated so:

- ``# (needs a real checkpoint: ... demo guard standing in)``: ``Guard.from_pretrained`` loads the
  demo guard whatever it is given (the block's options are not exercised).
- ``# (not run by the docs test: REASON)``: skipped, and the reason printed.

Shell blocks are cheap to check but not to run: every ``guardvl ...`` command in them is parsed by
the CLI's own parser, so a subcommand or an option that does not exist fails here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from guardvl_sdk import Guard, cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STAND_IN = "# (needs a real checkpoint"
SKIP = re.compile(r"^# \(not run by the docs test: (.+)\)$")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced block of ``language`` on ``page``."""
    text = page.read_text(encoding="utf-8")
    return [
        (text[: match.start()].count("\n") + 1, match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1) == language
    ]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_readme_commands_are_what_ci_runs() -> None:
    """README's install and test commands are .ci/run's, character for character."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    install = next(line for line in ci if "pip install" in line)
    tests = next(line for line in ci if line.startswith("ruff check"))
    assert install in readme and tests in readme
    assert "pytest" in tests  # so the snippet tests below run as part of it


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=_name)
def test_python_blocks_run(
    page: Path,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from guardvl_sdk.training.demo import demo_image

    model, _, _ = request.getfixturevalue("demo_guard")
    monkeypatch.setenv("GUARDVL_DEMO_DIR", str(model.parent))
    monkeypatch.chdir(tmp_path)
    demo_image(face=False, seed=1).save("door.jpg")
    demo_image(face=False, seed=2).save("kitchen.jpg")
    # A real module, so what a block defines (dataclasses, pickles) can find its home.
    module = types.ModuleType("docs_snippets_" + re.sub(r"\W", "_", _name(page)))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for line, code in blocks(page, "python"):
        where = f"{_name(page)}:{line}"
        first = code.splitlines()[0] if code.strip() else ""
        skipped = SKIP.match(first)
        if skipped:
            with capsys.disabled():
                print(f"\n{where}: skipped: {skipped.group(1)}")
            continue
        standing_in = first.startswith(STAND_IN)
        with _demo_standing_in(model) if standing_in else contextlib.nullcontext():
            try:
                exec(compile(code, where, "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"{where} raised {type(exc).__name__}: {exc}\n{code}")


@contextlib.contextmanager
def _demo_standing_in(model: Path) -> Any:
    """``Guard.from_pretrained`` loads the demo guard, whatever checkpoint it is given."""
    original = Guard.from_pretrained.__func__  # type: ignore[attr-defined]

    def demo(cls: type[Guard], *args: Any, **kwargs: Any) -> Guard:
        return original(cls, model, max_new_tokens=128)  # type: ignore[no-any-return]

    Guard.from_pretrained = classmethod(demo)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        Guard.from_pretrained = classmethod(original)  # type: ignore[method-assign, assignment]


def _commands(code: str) -> list[list[str]]:
    """The ``guardvl`` commands of a shell block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", line):
            words = shlex.split(part)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value before the command
            if words and words[0] == "guardvl" and "..." not in part:
                found.append(words[1:])
    return found


SHELL_PAGES = [p for p in PAGES if blocks(p, "bash")]


@pytest.mark.parametrize("page", SHELL_PAGES, ids=_name)
def test_shell_blocks_use_real_commands_and_options(page: Path) -> None:
    parser = cli.build_parser()
    for line, code in blocks(page, "bash"):
        for argv in _commands(code):
            try:
                with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                    parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{_name(page)}:{line}: `guardvl {shlex.join(argv)}` does not parse")
