"""The console's HTML: Jinja2 templates with autoescape on, and the small
computations they show (times, durations, timeline bars, JSON blocks).

Everything a document, an input or an output holds reaches the page only
through autoescape, so a step's output of `<script>` is text. The one
exception is the net's SVG, which `net` escapes itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from petriflow.engine.wire import RunView, StepView

JSON_SHOWN_CHARS = 4000
"""Pretty JSON longer than this is cut, with a link to the whole text."""


def when(seconds: float | None) -> str:
    """Wall-clock seconds as the console prints them: UTC, to the second."""
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def duration(start: float | None, end: float | None) -> str:
    if start is None:
        return "—"
    seconds = (time.time() if end is None else end) - start
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@dataclass(frozen=True)
class JsonBlock:
    """A value as pretty JSON, cut at `JSON_SHOWN_CHARS`; `size` is the whole text's length."""

    text: str
    size: int
    truncated: bool


def json_block(value: Any) -> JsonBlock:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if len(text) <= JSON_SHOWN_CHARS:
        return JsonBlock(text, len(text), False)
    return JsonBlock(text[:JSON_SHOWN_CHARS], len(text), True)


def full_json(value: Any) -> str:
    """The whole text behind a truncated block."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def preview(value: Any, chars: int = 80) -> str:
    """An input in one short line, for the history table."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= chars else text[: chars - 1] + "…"


@dataclass(frozen=True)
class Bar:
    """A step's place on its run's timeline, in percent of the run's span."""

    left: float
    width: float


def timeline(run: RunView) -> dict[str, Bar]:
    """Bars for the steps this run executed (kept steps ran in an earlier
    run, and would stretch the span to then); an unfinished step runs to now."""
    own = [s for s in run.steps if not s.kept and s.started_at is not None]
    if not own:
        return {}
    now = time.time()
    start = min(_start(s) for s in own)
    end = max(s.finished_at or now for s in own)
    span = max(end - start, 1e-3)
    return {
        s.step_id: Bar(
            left=round((_start(s) - start) / span * 100, 2),
            width=round(max((s.finished_at or now) - _start(s), 0) / span * 100, 2) or 0.5,
        )
        for s in own
    }


def _start(step: StepView) -> float:
    return step.started_at or 0.0


_environment = Environment(
    loader=PackageLoader("petriflow.console"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(when=when, iso=iso, preview=preview, json_block=json_block)
_environment.globals.update(duration=duration, timeline=timeline)


def render(template: str, **context: Any) -> str:
    return _environment.get_template(template).render(**context)
