"""No audit record is lost: short writes, torn tails, files rotated or deleted while open, writer
processes killed with SIGKILL again and again, databases that are not databases, and inputs
refused as invalid (a refusal is a decision, so it is recorded too)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardvl_sdk import AuditError, Guard, InvalidInputError
from guardvl_sdk.audit import AuditRecord, JsonlAuditLog, SqliteAuditLog
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_SAFE_REQUEST


def record(n: int, text: str = "") -> AuditRecord:
    return AuditRecord(
        time=f"2026-01-01T00:00:{n % 60:02d}Z",
        stage="input",
        request="unharmful",
        response=None,
        status="ok",
        blocked=False,
        latency_ms=float(n),
        model="m",
        policy="p",
        text_sha256=f"{n:064d}",
        response_sha256=None,
        image_sha256=[],
        text=text or None,
    )


def numbers(path: Path) -> list[int]:
    return [int(r.latency_ms) for r in JsonlAuditLog.read(path)]


def test_a_short_write_never_glues_the_next_record_to_its_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    log.write(record(1))
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # a disk that fills up mid-record
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(AuditError, match="short write"):
        log.write(record(2))
    monkeypatch.setattr(os, "write", real_write)
    log.write(record(3))
    log.write(record(4))
    assert numbers(path) == [1, 3, 4]
    assert JsonlAuditLog.recover(path)[1] == 1  # the torn half of record 2, skipped


def test_an_existing_file_ending_in_a_partial_line_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(record(1).model_dump_json().encode() + b"\n" + b'{"time": "2026-01-0')
    log = JsonlAuditLog(path)
    log.write(record(2))
    assert numbers(path) == [1, 2]
    assert path.read_bytes().endswith(b"\n")


def test_a_log_rotated_or_deleted_while_open_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    log.write(record(1))
    path.rename(tmp_path / "audit.jsonl.1")  # logrotate's default: rename, then a new file
    log.write(record(2))
    path.unlink()
    log.write(record(3))
    assert numbers(tmp_path / "audit.jsonl.1") == [1]
    assert numbers(path) == [3]  # 2 went to a file deleted afterwards, as the operator chose


def test_a_log_deleted_while_a_writer_waits_for_the_lock_is_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    log.write(record(1))
    real_flock = fcntl.flock
    deleted = []

    def delete_then_lock(fd: int, operation: int) -> None:  # rotated by another process
        if operation == fcntl.LOCK_EX and not deleted:  # between our check and our lock
            path.rename(tmp_path / "audit.jsonl.1")
            deleted.append(True)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", delete_then_lock)
    log.write(record(2))
    assert deleted and numbers(path) == [2]  # in the file at the path, not the rotated one
    assert numbers(tmp_path / "audit.jsonl.1") == [1]


_WRITER = """
import os, sys
from guardvl_sdk.audit import AuditRecord, JsonlAuditLog
path, worker = sys.argv[1], int(sys.argv[2])
log = JsonlAuditLog(path)
big = "x" * 200_000  # large records: a kill lands mid-write more often
n = 0
while True:
    n += 1
    ident = worker * 1_000_000 + n
    log.write(AuditRecord(time="t", stage="input", request=None, response=None, status="ok",
        blocked=True, latency_ms=float(ident), model=None, policy=None, text_sha256="0",
        response_sha256=None, image_sha256=[], text=big))
    # Only after the write returned: a confirmed record. One os.write, one atomic pipe write of a
    # whole line (print writes the number and its newline apart under PYTHONUNBUFFERED).
    os.write(1, f"{ident}\\n".encode())
"""


def confirmations(writer: subprocess.Popen[str]) -> set[int]:
    """Every ident a writer printed, read to EOF through the same buffered stream as ``readline``.

    Never ``communicate(timeout=...)`` after a ``readline``: it reads the raw pipe and drops what
    ``readline`` buffered, so its first "line" can be the tail of a real one (``911`` of
    ``10000911``): a number no writer wrote, reported as a lost record.
    """
    assert writer.stdout is not None
    out = writer.stdout.read()  # EOF: the writer is dead, its pipe closed
    writer.wait(timeout=30)
    assert not out or out.endswith("\n")  # each confirmation is one atomic write: whole lines
    return {int(line) for line in out.split()}


@pytest.mark.slow
def test_every_confirmed_record_survives_repeated_sigkill_of_writers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    confirmed: set[int] = set()
    workers: set[int] = set()
    for round_ in range(6):
        ids = [round_ * 10 + w for w in range(3)]
        workers.update(ids)
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(path), str(worker)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for worker in ids
        ]
        for writer in writers:  # every writer has written (its start-up is not the test)
            assert writer.stdout is not None
            confirmed.add(int(writer.stdout.readline()))
        time.sleep(0.3 + 0.15 * round_)
        for writer in writers:
            writer.send_signal(signal.SIGKILL)
        for writer in writers:
            confirmed |= confirmations(writer)
    records, torn = JsonlAuditLog.recover(path)
    recovered = [int(r.latency_ms) for r in records]
    assert {ident // 1_000_000 for ident in confirmed} == workers  # the harness read real idents
    assert confirmed and confirmed <= set(recovered)  # every confirmed record, whole
    assert len(recovered) == len(set(recovered))  # none twice
    # A writer killed between its write and its print leaves at most one record written but not
    # confirmed, and one killed mid-write at most one torn fragment (skipped by the reader).
    kills = len(workers)
    assert len(set(recovered) - confirmed) <= kills
    assert torn <= kills


def test_a_file_that_is_not_a_database_is_an_audit_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    path.write_bytes(b"this is not a SQLite database, just some text " * 100)
    with pytest.raises(AuditError, match="cannot open audit database"):
        SqliteAuditLog(path)


def test_an_unopenable_jsonl_path_is_an_audit_error(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(AuditError, match="cannot open audit log"):
        JsonlAuditLog(tmp_path / "dir.jsonl")


def test_a_failing_sink_fails_the_check_closed(tmp_path: Path) -> None:
    class Broken:
        include_content = False

        def write(self, record: AuditRecord) -> None:
            raise AuditError("disk on fire")

    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST), audit=Broken())
    with pytest.raises(AuditError):  # no verdict without its record: the caller cannot pass it
        guard.check("hello")


def test_an_input_refused_as_invalid_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST), audit=JsonlAuditLog(path))
    with pytest.raises(InvalidInputError):
        guard.check("look at this", image=b"not an image")
    with pytest.raises(InvalidInputError):
        guard.check_batch(["fine", {"text": "x", "image": b""}])
    records = JsonlAuditLog.read(path)
    refused = [r for r in records if r.status == "invalid_input"]
    assert len(refused) == 2 and all(r.blocked for r in refused)
    assert "not a readable image" in (refused[0].error or "")


@pytest.mark.parametrize("kind", ["fifo", "devnull", "dangling", "directory"])
def test_an_audit_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    # A FIFO took every record until its pipe filled, then hung every check; /dev/null (here
    # through a symlink) took every record and kept none.
    path = tmp_path / "audit.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devnull":
        path.symlink_to("/dev/null")
    elif kind == "dangling":
        path.symlink_to(tmp_path / "missing" / "audit.jsonl")
    else:
        path.mkdir()
    began = time.monotonic()
    with pytest.raises(AuditError):
        JsonlAuditLog(path)
    with pytest.raises(AuditError):
        SqliteAuditLog(path)
    assert time.monotonic() - began < 30  # nothing blocked on the FIFO


def test_a_log_replaced_by_a_fifo_while_open_fails_the_check_closed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST), audit=log)
    guard.check("first")
    path.unlink()
    os.mkfifo(path)  # the reopen after the "rotation" finds a FIFO
    with pytest.raises(AuditError):
        guard.check("second")
