"""`petriflow workflow load|list|show|discard`."""

from __future__ import annotations

import argparse
import json

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
            ", ".join(f"{t['id']} ({t.get('cron') or t['type']})" for t in d["triggers"]) or "-",
        ]
        for d in documents
    ]
    common.emit(
        args,
        {"workflows": [{key: d[key] for key in ("id", "version", "state", "triggers")} for d in documents]},
        render.table(["ID", "VERSION", "STATE", "TRIGGERS"], rows, "no workflows"),
    )
    return 0


def workflow_show(args: argparse.Namespace) -> int:
    document = common.connect(args).get_workflow(args.id, args.version)
    common.emit(args, document, json.dumps(document, indent=2))
    return 0


def workflow_discard(args: argparse.Namespace) -> int:
    common.connect(args).discard_workflow(args.id)
    common.emit(args, {"workflow_id": args.id, "discarded": True}, f"workflow {args.id} discarded")
    return 0
