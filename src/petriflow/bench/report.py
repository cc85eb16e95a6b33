"""The table the bench prints, and the profile's breakdown as text."""

from __future__ import annotations

from typing import Any

from petriflow.bench.environment import BASES
from petriflow.bench.stats import fmt_summary
from petriflow.bench.workloads import MODE_LABEL, MODES, WORKLOADS


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = []
    header = ("scenario", "base", "workload", "mode", "n", "median", "min..max", "unit")
    thr = results.get("throughput", {})
    flo = results.get("floor", {})
    for base in BASES:
        for workload in WORKLOADS:
            for mode in MODES:
                if base in thr and workload in thr[base]:
                    data = thr[base][workload]
                    rows.append(
                        (
                            "throughput",
                            base,
                            workload,
                            MODE_LABEL[mode],
                            str(data["cases"]),
                            *fmt_summary(data[mode]),
                            "cases/s" + (" *" if data.get("reduced") else ""),
                        )
                    )
    for base in BASES:
        for workload in WORKLOADS:
            for mode in MODES:
                if base in flo and workload in flo[base]:
                    data = flo[base][workload]
                    rows.append(
                        (
                            "floor",
                            flo[base]["system_base"],
                            workload,
                            MODE_LABEL[mode],
                            str(data["cases"]),
                            *fmt_summary(data[mode]),
                            "cases/s" + (" *" if data.get("reduced") else ""),
                        )
                    )
    peer = results.get("peer")
    if peer and peer.get("available"):
        for mode in MODES:
            rows.append(
                (
                    "peer DBOS",
                    "in-process",
                    "seq3",
                    MODE_LABEL[mode],
                    str(peer["cases"]),
                    *fmt_summary(peer[mode]),
                    "cases/s",
                )
            )
    lat = results.get("latency", {})
    for base in BASES:
        if base in lat:
            for p in ("p50", "p99"):
                rows.append(
                    ("latency", base, "seq3 work order", p, str(lat["samples"]), *fmt_summary(lat[base][p]), "ms")
                )
    ing = results.get("ingress") or {}
    if "accepted_per_s" in ing:
        mode = f"{ing['concurrency']} at a time"
        rows.append(
            (
                "ingress",
                "daemon",
                "seq3 webhook",
                mode,
                str(ing["requests"]),
                *fmt_summary(ing["accepted_per_s"]),
                "accepted/s",
            )
        )
        for p in ("p50_ms", "p99_ms", "max_ms"):
            if p in ing:
                rows.append(
                    (
                        "ingress",
                        "daemon",
                        "seq3 webhook",
                        f"answer {p[:-3]}",
                        str(ing["requests"]),
                        *fmt_summary(ing[p]),
                        "ms",
                    )
                )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if not rows:  # e.g. only the statements, waiting or recovery scenario ran
        lines = []
    notes = []
    if any(r[-1].endswith("*") for r in rows):
        notes.append(
            "* fewer cases than requested, so that one run stays under the per-run cap of "
            f"{results.get('options', {}).get('max_run_s')}s: see 'reduced' in the JSON"
        )
    ratio_lines = []
    for base in BASES:
        for workload in WORKLOADS:
            if base in thr and base in flo and workload in thr[base] and workload in flo[base]:
                parts = [
                    f"{MODE_LABEL[m]} {thr[base][workload][m]['median'] / flo[base][workload][m]['median']:.2f}"
                    for m in MODES
                ]
                ratio_lines.append(f"petriflow/floor  {base:8} {workload}: " + ", ".join(parts))
    if peer:
        if peer.get("available"):
            for base, ratio in peer.get("petriflow_over_dbos", {}).items():
                ratio_lines.append(
                    f"petriflow/DBOS   {base:8} seq3: " + ", ".join(f"{MODE_LABEL[m]} {ratio[m]:.2f}" for m in MODES)
                )
        else:
            ratio_lines.append(f"peer DBOS: not measured: {peer.get('reason')}")
    waiting = results.get("waiting")
    if waiting and "after_passivation" in waiting:
        after = waiting["after_passivation"]
        ratio_lines.append(
            f"waiting: {waiting['parked_cases']} cases parked at {waiting['park_rate']:.1f}/s; after passivation "
            f"{after['processes']} processes, {after['pss_kb'] / 1024:.1f} MB PSS (before: "
            f"{waiting['before']['processes']} processes, {waiting['before']['pss_kb'] / 1024:.1f} MB; "
            f"{waiting['pss_kb_per_waiting_case']:.2f} kB per case); peak {waiting['peak_processes_while_parking']} "
            f"processes while parking; completing all took {waiting['complete_all_seconds']:.1f}s "
            f"({waiting['complete_rate']:.1f}/s), {waiting['finished_cases']} finished"
        )
        if "extrapolated" in waiting:
            x = waiting["extrapolated"]
            ratio_lines.append(
                f"waiting, {x['label']}: ~{x['pss_kb'] / 1024:.0f} MB PSS, ~{x['processes']} "
                f"processes, ~{x['park_seconds']:.0f}s to park, ~{x['complete_all_seconds']:.0f}s "
                f"to complete"
            )
    recovery = results.get("recovery") or {}
    for phase in ("live", "accepted"):
        r = recovery.get(phase)
        if not r or "recover_seconds" not in r:
            continue
        text = (
            f"recovery {phase}: {r['in_flight_at_kill']} unfinished at the SIGKILL"
            + (f" ({r['started_cases']} started in {r['submit_seconds']:.1f}s)" if phase == "live" else "")
            + f"; answering {r['restart_answer_seconds']:.1f}s after restart, all finished after "
            f"{r['recover_seconds']:.1f}s; peak {r['peak_processes']} processes / "
            f"{r['peak_pss_kb'] / 1024:.0f} MB PSS"
        )
        if "aborted" in r:
            text += f"; {r['aborted']}"
        else:
            text += (
                f"; lost {r['lost_cases']}, transitions completed twice {r['transitions_completed_twice']}, "
                f"workitems re-executed {r['workitems_reexecuted']}, ok={r['ok']}"
            )
        ratio_lines.append(text)
    ratio_lines += ingress_lines(ing)
    ratio_lines += console_lines(results.get("console") or {})
    text = "\n".join(lines + [""] + ratio_lines + statements_lines(results.get("statements") or {}) + notes)
    return text.strip("\n")


def ingress_lines(ingress: dict[str, Any]) -> list[str]:
    """The ingress scenario, one line per burst: what was refused, failed, lost."""
    out = []
    for rep, run in enumerate(ingress.get("runs", []), 1):
        errors = f"errors {run['errors']}"
        if run["errors"]:
            kinds = {**run["connection_error_kinds"], **{f"status {k}": v for k, v in run["other_statuses"].items()}}
            errors += " (" + ", ".join(f"{k} {v}" for k, v in kinds.items()) + ")"
        out.append(
            f"ingress rep {rep}: {run['requests']} webhooks {run['concurrency']} at a time in {run['wall_s']:.2f}s: "
            f"accepted {run['accepted']}, refused {run['refused_with_retry_after']} with Retry-After / "
            f"{run['refused_without_retry_after']} without, {errors}; accepted work orders: "
            f"{run['accepted_succeeded']} succeeded, {run['lost']} lost, "
            + (
                f"all ended {run['all_ended_after_s']:.1f}s after the burst began"
                if run["ended_within_wait"]
                else f"not all ended after waiting {run['end_wait_s']:.0f}s"
            )
            + f"; all_accepted_succeeded={run['all_accepted_succeeded']}"
        )
    if out and ingress.get("server"):
        out.append(f"ingress server: {ingress['server']}")
    return out


def console_lines(console: dict[str, Any]) -> list[str]:
    """The console scenario: how the history was built, then one line per page."""
    if "pages" not in console:
        return []
    build, n = console["build"], console["work_orders"]
    out = [
        f"console build: {n} work orders seeded in {build['seconds']:.1f}s ({build['rows_per_s']:.0f} rows/s, "
        f"{build['file_mb']:.0f} MB); {len(console['real_work_orders'])} real work orders run"
    ]
    for name, page in console["pages"].items():
        if "median_ms" not in page:
            out.append(f"console {name}: no answer ({n} work orders); errors {page['errors']}")
            continue
        line = f"console {name}: median {page['median_ms']:.1f} ms, p95 {page['p95_ms']:.1f} ms ({n} work orders)"
        if page["errors"]:
            line += f"; errors {page['errors']} (" + ", ".join(f"{k} {v}" for k, v in page["error_kinds"].items()) + ")"
        out.append(line)
    out.append(
        f"console: {console['pages_under_target']} of {len(console['pages'])} pages with a median under "
        f"{console['target_ms']:.0f} ms and no error; {console['samples']} samples each; errors {console['errors']}"
    )
    return out


STATEMENT_COLUMNS = ("statements", "commits", "begins", "selects", "inserts", "updates", "deletes", "other")


def statements_lines(statements: dict[str, Any]) -> list[str]:
    """The statements scenario: SQL per step (one transition executed) by workload and mode."""
    if not any(workload in statements for workload in WORKLOADS):
        return []
    steps = ", ".join(f"{w} {statements[w]['transitions_per_case']}" for w in WORKLOADS if w in statements)
    out = [
        "",
        f"SQL per step ({statements['base']}, {statements['api']} API; a step is one transition executed, "
        f"{steps} per case):",
    ]
    header = ("workload", "mode", "cases", *STATEMENT_COLUMNS, "statements/case", "commits/case")
    rows: list[tuple[str, ...]] = []
    by_table: list[str] = []
    for workload in WORKLOADS:
        for mode in MODES:
            run = statements.get(workload, {}).get(mode)
            if not run:
                continue
            rows.append(
                (
                    workload,
                    MODE_LABEL[mode],
                    f"{run['cases']}" + ("" if run["finished_ok"] == run["cases"] else f" ({run['finished_ok']} ok)"),
                    *(f"{run['per_step'][c]:.2f}" for c in STATEMENT_COLUMNS),
                    f"{run['per_case']['statements']:.1f}",
                    f"{run['per_case']['commits']:.2f}",
                )
            )
            selects = run.get("per_step_by_table", {}).get("SELECT", {})
            if selects:
                tables = ", ".join(f"{t} {v:.2f}" for t, v in selects.items())
                by_table.append(f"  {workload} {MODE_LABEL[mode]}: SELECTs per step by table: {tables}")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    aligned = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    out += [aligned[0], "  ".join("-" * w for w in widths), *aligned[1:], *by_table]
    if statements.get("capped"):
        out.append(f"  cases capped: {statements['capped']}")
    return out


def profile_text(profile: dict[str, Any]) -> str:
    lines = []
    for where in ("embedded", "daemon"):
        data = profile.get(where)
        if not data or "groups" not in data:
            continue
        lines.append(
            f"profile {where}: {data['ms_per_case']:.2f} ms busy per case "
            f"(wall {data['wall_ms_per_case']:.2f} ms per case, {data['cases']} cases)"
        )
        for group, figures in sorted(data["groups"].items(), key=lambda kv: -kv[1]["percent"]):
            lines.append(f"  {figures['percent']:5.1f}%  {figures['ms_per_case']:7.2f} ms/case  {group}")
        lines.append("  top self time:")
        for item in data["top_self"][:10]:
            lines.append(f"    {item['percent']:5.1f}%  {item['calls_per_case']:7.1f} calls/case  {item['function']}")
        lines.append("  petriflow functions by cumulative time:")
        for item in data["top_petriflow_cumulative"][:8]:
            lines.append(
                f"    {item['cum_ms_per_case']:7.2f} ms/case  {item['calls_per_case']:6.1f} calls/case  "
                f"{item['function']}"
            )
    return "\n".join(lines)
