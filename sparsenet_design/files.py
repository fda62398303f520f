"""Files the toolkit writes and reads back: one atomic write, one JSON reader.

A write goes to a temporary file beside the target, is flushed to disk and
renamed over the target, so a reader (or a run killed mid-write, or a full
disk) sees the old file or the new one, never half of one. New files get the
mode the user's umask gives (as ``open()`` does), so others on a shared machine
can read specs, weights and configs when the umask lets them.

Every read failure is a :class:`~sparsenet_design.errors.CheckpointError` that
names the file and says what to do.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import CheckpointError


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # os.open with 0o666 lets the kernel apply the umask, as open() would (mkstemp forces 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON, atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """The JSON in ``path``; a missing, unreadable or broken file is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{what} {path} cannot be read ({exc.strerror or exc}); check its permissions.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} {path} is not valid JSON ({exc}); it may be truncated or corrupt. "
                              "Re-create it with the command that wrote it.") from exc


def read_jsonl(path: str | Path, what: str = "log") -> list[Any]:
    """The records of a JSON-lines file, in order (none if it does not exist). A torn
    last line (a run killed while writing) is dropped; a broken line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"The {what} {path} cannot be read ({exc}).") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise CheckpointError(
                f"Line {number} of the {what} {path} is not valid JSON ({exc}). The file was edited or "
                "mixed with another log; remove the line or start a new run."
            ) from exc
    return records
