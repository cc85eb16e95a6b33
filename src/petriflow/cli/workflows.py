"""`petriflow workflow load|list|show|discard`."""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

from petriflow.cli import arguments, common, render


def workflow_load(args: argparse.Namespace) -> int:
    workflow_id, version = common.connect(args).put_workflow(
        arguments.json_object(arguments.read_text(args.file, "workflow"), args.file)
    )
    common.emit(
        args, {"workflow_id": workflow_id, "version": version}, f"workflow {workflow_id} version {version} stored"
    )
    return 0


def workflow_list(args: argparse.Namespace) -> int:
    documents = common.connect(args).list_workflows()
    rows = [
        [
            d["id"],
            d["version"],
            d["state"],
            ", ".join(_trigger_summary(t) for t in d["triggers"]) or "-",
        ]
        for d in documents
    ]
    common.emit(
        args,
        {"workflows": [{key: d[key] for key in ("id", "version", "state", "triggers")} for d in documents]},
        render.table(["ID", "VERSION", "STATE", "TRIGGERS"], rows, "no workflows"),
    )
    return 0


def _trigger_summary(trigger: dict[str, Any]) -> str:
    """ "nightly (0 2 * * *)", "invoice-hook (webhook)", "invoice-hook (webhook, api_key)"."""
    auth = trigger.get("auth") or {}
    if trigger["type"] == "webhook" and auth.get("type", "none") != "none":
        return f"{trigger['id']} (webhook, {auth['type']})"
    return f"{trigger['id']} ({trigger.get('cron') or trigger['type']})"


def _shown(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every webhook trigger's auth spelt out ({"type": "none"}
    where the stored document leaves it out): its type, header and the name of
    the secret's environment variable, which is all a workflow holds of it."""
    shown = copy.deepcopy(document)
    for trigger in shown.get("triggers", []):
        if trigger.get("type") == "webhook" and not trigger.get("auth"):
            trigger["auth"] = {"type": "none"}
    return shown


def workflow_show(args: argparse.Namespace) -> int:
    document = _shown(common.connect(args).get_workflow(args.id, args.version))
    common.emit(args, document, json.dumps(document, indent=2))
    return 0


def workflow_discard(args: argparse.Namespace) -> int:
    common.connect(args).discard_workflow(args.id)
    common.emit(args, {"workflow_id": args.id, "discarded": True}, f"workflow {args.id} discarded")
    return 0
