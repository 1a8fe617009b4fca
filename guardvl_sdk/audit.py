"""Audit log: one record per guard decision, append-only, crash-safe, safe under concurrency.

Records hold what was decided and content *hashes*; raw text is stored only when you opt in
(``include_content=True``), since requests can carry personal data. Two sinks ship:

- :class:`JsonlAuditLog`: one JSON line per decision. Each line is written with a single
  ``write`` to a file opened with ``O_APPEND``, so concurrent writers (threads or processes) never
  interleave, and a process killed mid-run leaves every completed line whole.
- :class:`SqliteAuditLog`: one row per decision in SQLite (WAL journal), committed per record.

A sink that fails raises :class:`~guardvl_sdk.errors.AuditError` from the check: a decision is
never returned without its record.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
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
        images: Sequence[Image.Image],
        include_content: bool,
    ) -> AuditRecord:
        """Build the record of one check."""
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
            image_sha256=[image_hash(image) for image in images],
            inspected=list(verdict.inspected),
            error=verdict.error,
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
    """Append audit records to a JSONL file.

    Args:
        path: The file; created (with its folder) if missing, appended to if present.
        include_content: Also store the raw request and response text (off by default).
        fsync: ``os.fsync`` after every record, so records survive a power loss too, not only a
            crash of this process (slower).
    """

    def __init__(
        self, path: str | Path, *, include_content: bool = False, fsync: bool = False
    ) -> None:
        self.path = Path(path)
        self.include_content = include_content
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, record: AuditRecord) -> None:
        """Append one line with a single ``write`` (atomic with ``O_APPEND``)."""
        line = (record.model_dump_json() + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # only on a full disk or similar: the line is torn
                raise OSError(f"short write: {written} of {len(line)} bytes")
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise AuditError(f"could not write audit record to {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

    @staticmethod
    def read(path: str | Path) -> list[AuditRecord]:
        """Read every record of a JSONL audit log."""
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        return [AuditRecord.model_validate(json.loads(line)) for line in lines if line]


class SqliteAuditLog:
    """Store audit records in a SQLite table ``audit`` (one JSON column per field).

    Args:
        path: The database file.
        include_content: Also store the raw request and response text (off by default).
    """

    def __init__(self, path: str | Path, *, include_content: bool = False) -> None:
        self.path = Path(path)
        self.include_content = include_content
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT)"
        )

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
