"""Parsing what a user types: JSON objects given inline or as @file, and relative times such as 1h."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from petriflow.engine.errors import Invalid

RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def json_object(text: str, what: str) -> dict[str, Any]:
    """Parse user-given JSON, naming the flag or file in the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"{what}: cannot read {path}: {exc.strerror}") from None


def json_argument(value: str, flag: str) -> dict[str, Any]:
    """`--flag JSON` or `--flag @file`, as curl takes a body."""
    if value.startswith("@"):
        return json_object(read_text(value[1:], flag), f"{flag} file {value[1:]}")
    return json_object(value, flag)


def since(value: str) -> float:
    """An ISO 8601 time (local time if it names no zone) or a duration back from now: 10m, 2h, 1d."""
    match = RELATIVE.match(value)
    if match:
        return time.time() - timedelta(**{UNITS[match[2]]: float(match[1])}).total_seconds()
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise Invalid(f"--since takes an ISO 8601 time or a duration like 10m, 2h, 1d; got {value!r}") from None
