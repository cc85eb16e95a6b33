"""The command line's pure parts, without a daemon: parsing what a user
types, rendering tables, and the parser knowing every documented command."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from petriflow.cli import arguments, build_parser, render
from petriflow.engine.errors import Invalid

# -- arguments --------------------------------------------------------------------------------


def test_json_argument_takes_an_object_inline_or_from_a_file(tmp_path):
    assert arguments.json_argument('{"invoice": 42}', "--input") == {"invoice": 42}
    body = tmp_path / "input.json"
    body.write_text('{"from": "file"}')
    assert arguments.json_argument(f"@{body}", "--input") == {"from": "file"}


@pytest.mark.parametrize(
    "value,message",
    [
        ("{nope", "--input is not valid JSON"),
        ("[1, 2]", "--input must be a JSON object, got list"),
        ("@/no/such/file.json", "--input: cannot read /no/such/file.json"),
    ],
)
def test_bad_json_arguments_are_refused_naming_the_flag(value, message):
    with pytest.raises(Invalid, match=message):
        arguments.json_argument(value, "--input")


@pytest.mark.parametrize("value,seconds", [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)])
def test_since_takes_a_duration_back_from_now(value, seconds):
    assert arguments.since(value) == pytest.approx(time.time() - seconds, abs=2)


def test_since_takes_an_iso_time_and_refuses_anything_else():
    assert arguments.since("2026-01-02T03:04:05+00:00") == 1767323045.0
    with pytest.raises(Invalid, match="--since takes an ISO 8601 time or a duration like 10m, 2h, 1d; got 'yesterday'"):
        arguments.since("yesterday")


# -- render -----------------------------------------------------------------------------------


def test_table_aligns_columns_and_says_when_empty():
    text = render.table(["id", "state"], [["a", "success"], ["long-id", "failed"]], "no rows")
    assert text.splitlines() == ["id       state", "a        success", "long-id  failed"]
    assert render.table(["id"], [], "no rows") == "no rows"


def test_clip_keeps_short_values_and_cuts_long_ones():
    assert render.clip({"a": 1}) == '{"a": 1}'
    assert render.clip(None) == "-"
    long = render.clip({"text": "x" * 100})
    assert len(long) == render.CELL_WIDTH and long.endswith("…")


def test_times_and_durations():
    assert render.took(10.0, 10.25) == "0.250s"
    assert render.took(None, 1.0) == render.when(None) == "-"
    assert len(render.clock(time.time())) == len("12:34:56.789")


# -- the parser -------------------------------------------------------------------------------

DOCUMENTED = [
    ["start", "--foreground"],
    ["stop"],
    ["status", "--json"],
    ["demo", "--keep-running"],
    ["workflow", "load", "flow.json"],
    ["workflow", "list"],
    ["workflow", "show", "flow", "--version", "2"],
    ["workflow", "discard", "flow"],
    ["submit", "flow", "--input", "{}", "--wait"],
    ["workorders", "--state", "failed", "--since", "1h"],
    ["show", "WO"],
    ["retry", "RUN", "--from", "STEP"],
    ["retry-many", "WO1", "WO2"],
    ["cancel", "WO"],
    ["complete", "WI", "--output", "{}"],
    ["watch", "--timeout", "3"],
    ["actors"],
    ["kill", "ID"],
]


@pytest.mark.parametrize("argv", DOCUMENTED, ids=lambda argv: " ".join(argv[:2]))
def test_every_documented_command_parses_to_its_runner(argv):
    args = build_parser().parse_args(argv)
    assert callable(args.run)


def test_an_unknown_command_or_state_is_refused(capsys):
    with pytest.raises(SystemExit) as unknown:
        build_parser().parse_args(["frobnicate"])
    assert unknown.value.code == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["workorders", "--state", "sleeping"])
    assert "invalid choice: 'sleeping'" in capsys.readouterr().err


SERVER_MODULES = {"aiohttp", "jinja2", "prometheus_client"}


def test_a_command_that_only_talks_to_the_daemon_loads_no_http_server():
    """Loading the keeper's HTTP server, console and metrics took about 0.5 s
    of a CLI call's 1.2 s; only `start` runs them, so the rest leaves them unloaded."""
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, petriflow.cli; print(sorted({SERVER_MODULES!r} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
