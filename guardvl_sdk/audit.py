"""Audit log: one record per guard decision, append-only, crash-safe, safe under concurrency.

Records hold what was decided and content *hashes*; raw text is stored only when you opt in
(``include_content=True``), since requests can carry personal data. Two sinks ship:

- :class:`JsonlAuditLog`: one JSON line per decision, written with a single ``write`` to a file
  opened with ``O_APPEND`` under an exclusive ``flock``, so concurrent writers (threads or
  processes) never interleave.
- :class:`SqliteAuditLog`: one row per decision in SQLite (WAL journal), committed per record.

**The JSONL recovery rule.** A record is one line: a JSON object ending in a newline. A write
cut short (a full disk, a process killed mid-write) leaves a *torn fragment*: a line that does
not parse. The writer never appends onto one: before each record it looks at the file's last
byte and, when that is not a newline, starts the record on a fresh line. So every complete
record stays a whole line, and :meth:`JsonlAuditLog.read` recovers all of them by skipping the
lines that do not parse (:meth:`JsonlAuditLog.recover` also counts them). A file rotated or
deleted while open is noticed at the next write and reopened at its path.

**When the sink fails** (a write or an open), the check raises
:class:`~guardvl_sdk.errors.AuditError` instead of returning its verdict: a decision is never
returned without its record, so the caller must treat the check as not passed (fail-closed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from guardvl_sdk.errors import AuditError
from guardvl_sdk.verdict import InspectedPart

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL import Image

    from guardvl_sdk.verdict import Verdict

__all__ = ["AuditRecord", "AuditSink", "JsonlAuditLog", "SqliteAuditLog", "content_hash"]

_REOPEN_TRIES = 3  # a path replaced this often during one write is an error, not a loop


def content_hash(data: str | bytes) -> str:
    """SHA-256 of text (UTF-8) or bytes, hex."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def image_hash(image: Image.Image) -> str:
    """SHA-256 of an image's decoded RGB pixels and size (so re-encodings of one picture match)."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class AuditRecord(BaseModel):
    """One guard decision, as the audit log stores it."""

    model_config = ConfigDict(frozen=True)

    time: str = Field(description="UTC time of the decision, ISO 8601")
    stage: str
    request: str | None
    response: str | None
    status: str
    blocked: bool
    latency_ms: float
    model: str | None
    policy: str | None
    text_sha256: str
    response_sha256: str | None
    image_sha256: list[str]
    inspected: list[InspectedPart] = Field(
        default_factory=list, description="The verdict's receipt: kinds, origins, sizes, hashes"
    )
    error: str | None = None
    text: str | None = None
    response_text: str | None = None

    @classmethod
    def from_check(
        cls,
        verdict: Verdict,
        *,
        text: str,
        response: str | None,
        image_sha256: Sequence[str],
        include_content: bool,
    ) -> AuditRecord:
        """Build the record of one check (``image_sha256``: each image's :func:`image_hash`)."""
        return cls(
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            stage=verdict.stage,
            request=verdict.request.value if verdict.request else None,
            response=verdict.response.value if verdict.response else None,
            status=verdict.status.value,
            blocked=verdict.blocked,
            latency_ms=round(verdict.latency_ms, 3),
            model=verdict.model,
            policy=verdict.policy,
            text_sha256=content_hash(text),
            response_sha256=None if response is None else content_hash(response),
            image_sha256=list(image_sha256),
            inspected=list(verdict.inspected),
            error=verdict.error,
            text=text if include_content else None,
            response_text=response if include_content else None,
        )

    @classmethod
    def refusal(
        cls,
        error: str,
        *,
        text: str,
        response: str | None,
        model: str | None,
        policy: str | None,
        include_content: bool,
    ) -> AuditRecord:
        """The record of an input refused as invalid (a refusal is a decision: blocked)."""
        return cls(
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            stage="input" if response is None else "output",
            request=None,
            response=None,
            status="invalid_input",
            blocked=True,
            latency_ms=0.0,
            model=model,
            policy=policy,
            text_sha256=content_hash(text),
            response_sha256=None if response is None else content_hash(response),
            image_sha256=[],
            error=error,
            text=text if include_content else None,
            response_text=response if include_content else None,
        )


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go. ``write`` must be thread-safe and durable when it returns."""

    include_content: bool

    def write(self, record: AuditRecord) -> None:
        """Append one record; raise on failure."""
        ...


class JsonlAuditLog:
    """Append audit records to a JSONL file (see the recovery rule in :mod:`guardvl_sdk.audit`).

    Args:
        path: The file; created (with its folder) if missing, appended to if present.
        include_content: Also store the raw request and response text (off by default).
        fsync: ``os.fsync`` after every record, so records survive a power loss too, not only a
            crash of this process (slower).

    Raises:
        AuditError: The file cannot be opened for appending.
    """

    def __init__(
        self, path: str | Path, *, include_content: bool = False, fsync: bool = False
    ) -> None:
        self.path = Path(path)
        self.include_content = include_content
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd = self._open()

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO must not hang the open; it is refused below.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            # A FIFO fills and then blocks every check; /dev/null loses every record.
            os.close(fd)
            raise AuditError(f"audit log {self.path} is not a regular file")
        os.set_blocking(fd, True)
        return fd

    def write(self, record: AuditRecord) -> None:
        """Append one record as one line, on a fresh line, with a single ``write``."""
        line = (record.model_dump_json() + "\n").encode("utf-8")
        try:
            with self._lock, self._exclusive() as fd:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # never onto a torn fragment
                written = os.write(fd, line)
                if written != len(line):  # a full disk or similar: this record is torn
                    raise OSError(f"short write: {written} of {len(line)} bytes")
                if self.fsync:
                    os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"could not write audit record to {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[int]:
        """The descriptor of the file at ``path`` (reopened if rotated or deleted), under ``flock``.

        The path is compared with the descriptor only once the lock is held: checked before it,
        a rotation or deletion in between would send the record to a file nobody reads.
        """
        for _ in range(_REOPEN_TRIES):
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            if self._names_my_file():
                break
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1  # if the reopen fails, later writes fail on this, not on a reused fd
            self._fd = self._open()
        else:
            raise OSError(f"the file kept moving while it was reopened {_REOPEN_TRIES} times")
        try:
            yield self._fd
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _names_my_file(self) -> bool:
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

    @staticmethod
    def read(path: str | Path) -> list[AuditRecord]:
        """Every complete record of a JSONL audit log, in file order (torn fragments skipped)."""
        return JsonlAuditLog.recover(path)[0]

    @staticmethod
    def recover(path: str | Path) -> tuple[list[AuditRecord], int]:
        """Apply the recovery rule: the complete records, and the torn fragments skipped."""
        records, torn = [], 0
        for line in Path(path).read_bytes().split(b"\n"):
            if not line.strip():
                continue
            try:
                records.append(AuditRecord.model_validate_json(line))
            except ValueError:
                torn += 1
        return records, torn


class SqliteAuditLog:
    """Store audit records in a SQLite table ``audit`` (one JSON column per field).

    Args:
        path: The database file.
        include_content: Also store the raw request and response text (off by default).

    Raises:
        AuditError: The file cannot be opened as a SQLite database (missing folder rights, not a
            database, corrupt).
    """

    def __init__(self, path: str | Path, *, include_content: bool = False) -> None:
        self.path = Path(path)
        self.include_content = include_content
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS audit "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT)"
            )
        except (sqlite3.Error, OSError) as exc:
            raise AuditError(f"cannot open audit database {self.path}: {exc}") from exc

    def write(self, record: AuditRecord) -> None:
        """Insert one record in its own transaction."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO audit (record) VALUES (?)", (record.model_dump_json(),)
                )
        except sqlite3.Error as exc:
            raise AuditError(f"could not write audit record to {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @staticmethod
    def read(path: str | Path) -> list[AuditRecord]:
        """Read every record of a SQLite audit log, in insertion order."""
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT record FROM audit ORDER BY id").fetchall()
        return [AuditRecord.model_validate_json(row[0]) for row in rows]
