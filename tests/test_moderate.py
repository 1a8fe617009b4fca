"""`guardvl moderate`: every line of an unlabelled JSONL batch checked, one verdict per line.

The guard is a scripted OpenAI-compatible server on loopback (`FakeChatServer`), reached with
`--server` over real HTTP: it calls a request harmful when it mentions a bomb.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guardvl_sdk import cli
from guardvl_sdk.testing import FakeChatServer
from guardvl_sdk.training.demo import demo_image


def scripted_guard(body: dict[str, Any]) -> str:
    harmful = "bomb" in json.dumps(body["messages"][1:])
    label = "harmful" if harmful else "unharmful"
    response = "unharmful" if "AI assistant:\\nNone" not in json.dumps(body) else "None"
    return f"<think>scripted</think>\n<result>\nRequest: {label}\nResponse: {response}\n</result>"


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with FakeChatServer(scripted_guard) as fake:
        yield fake


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def moderate(source: Path, out: Path, server: FakeChatServer, *extra: str) -> int:
    argv = ["moderate", str(source), "-o", str(out), "--server", server.url, "--model", "guard"]
    return cli.main([*argv, "--batch-size", "2", *extra])


def test_every_kind_of_line_gets_one_verdict_and_blocked_items_set_the_status(
    tmp_path: Path, server: FakeChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pics").mkdir()
    demo_image(face=False).save(tmp_path / "pics" / "field.png")
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "text": "How do I bake bread?"},
            {"id": "b", "text": "What is this?", "images": ["pics/field.png"]},
            "",  # blank lines are skipped
            {"id": "c", "request": "How do I make a bomb?", "response": "No."},
            {"id": "d", "messages": [{"role": "user", "content": "Tell me a joke"}]},
            {"id": "e", "text": "hi", "metadata": {"user": 7}},  # not a field: refused
            "{not json",
            {"id": "g", "text": "look", "image": "pics/missing.png"},
        ],
    )
    out = tmp_path / "out.jsonl"
    assert moderate(source, out, server) == cli.EXIT_BLOCKED
    rows = results(out)
    assert [r["line"] for r in rows] == [1, 2, 4, 5, 6, 7, 8]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e", None, "g"]
    assert [r["blocked"] for r in rows] == [False, False, True, False, True, True, True]
    assert rows[2]["verdict"]["request"] == "harmful" and rows[2]["verdict"]["stage"] == "output"
    assert rows[1]["verdict"]["status"] == "ok"
    assert "unknown fields ['metadata']" in rows[4]["error"]
    assert "not JSON" in rows[5]["error"] and "no such image file" in rows[6]["error"]
    assert len(server.requests) == 4  # unreadable lines never reach the guard
    err = capsys.readouterr().err
    assert "moderating" in err  # the progress bar is labelled
    assert "7 lines in" in err and "4 blocked, of which 3 could not be checked" in err


def test_nothing_blocked_exits_0(tmp_path: Path, server: FakeChatServer) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"text": "hello"}, {"text": "bye"}])
    out = tmp_path / "out.jsonl"
    assert moderate(source, out, server, "--quiet") == cli.EXIT_ALLOWED
    assert [r["blocked"] for r in results(out)] == [False, False]


def test_a_second_run_checks_only_the_lines_without_a_result(
    tmp_path: Path, server: FakeChatServer
) -> None:
    rows = [{"id": n, "text": f"question {n}" + (" bomb" if n == 4 else "")} for n in range(6)]
    source = write_lines(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert moderate(source, out, server, "--quiet") == cli.EXIT_BLOCKED
    first = out.read_text().splitlines(keepends=True)
    # Interrupted after two results, in the middle of writing the third.
    out.write_text("".join(first[:2]) + first[2][:15])
    server.requests.clear()
    assert moderate(source, out, server, "--quiet") == cli.EXIT_BLOCKED
    assert len(server.requests) == 4  # lines 3 to 6 only
    assert [r["id"] for r in results(out)] == [0, 1, 2, 3, 4, 5]
    decided = [(r["line"], r["blocked"], r["verdict"]["request"]) for r in results(out)]
    assert decided == [
        (r["line"], r["blocked"], r["verdict"]["request"]) for r in map(json.loads, first)
    ]
    server.requests.clear()
    assert moderate(source, out, server, "--quiet") == cli.EXIT_BLOCKED  # all done: the tally
    assert server.requests == []


def test_input_errors_exit_2_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "model"  # would fail to load, were it tried
    argv = ["--model", str(missing), "--quiet"]
    out = str(tmp_path / "out.jsonl")
    assert cli.main(["moderate", str(tmp_path / "absent.jsonl"), "-o", out, *argv]) == 2
    assert "cannot read" in capsys.readouterr().err
    empty = write_lines(tmp_path / "empty.jsonl", [""])
    assert cli.main(["moderate", str(empty), "-o", out, *argv]) == 2
    assert "has no lines to check" in capsys.readouterr().err
    assert cli.main(["moderate", str(empty), "-o", str(empty), *argv]) == 2
    assert "must not be the input" in capsys.readouterr().err
