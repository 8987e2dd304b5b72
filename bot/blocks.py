"""Block Kit messages. Pure functions: data in, ``{"text", "blocks"}`` out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from segmentation.service import CustomerAnswer, Prediction

Message = dict[str, Any]

HELP_EXAMPLES = [
    ("/segment 30 2 150", "segment of a customer who last bought 30 days ago, 2 orders, 150 spent"),
    ("/segment r=30 f=2 m=150", "the same, by name; also `30d 2 $150` and `150,50`"),
    ("/segment customer <id>", "one customer's R, F, M, segment and actions"),
    ("/segment segments", "every segment with size, share and actions"),
    ("/segment at-risk", "customers and revenue at risk of churning, with an export button"),
    ("/segment export <segment>", "a CSV of a segment's customers, sent to you"),
    ("/segment model", "the model being served"),
    ("/segment digest subscribe daily 09:00", "a digest of segments and churn risk in this channel; also `list`, `unsubscribe`, `now`"),
    ("/segment retrain", "retrain on the latest data (admins)"),
    ("/segment rollback", "serve the previous model (admins)"),
]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def button(text: str, action_id: str, value: str = "", style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id}
    if value:
        b["value"] = value[:2000]
    if style:
        b["style"] = style
    return b


def money(x: float) -> str:
    return f"{x:,.2f}"


def _actions_text(actions: Sequence[str]) -> str:
    return "*Recommended actions*\n" + "\n".join(f"• {a}" for a in actions)


def _rfm_fields(r: float, f: float, m: float) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": f"*Recency*\n{r:,.0f} days"},
            {"type": "mrkdwn", "text": f"*Frequency*\n{f:,.0f} orders"},
            {"type": "mrkdwn", "text": f"*Monetary*\n{money(m)}"},
        ],
    }


def prediction(p: Prediction, model_version: str, shareable: bool = True, asked_by: str | None = None) -> Message:
    blocks = [
        header(p.segment),
        section(p.description),
        _rfm_fields(p.recency, p.frequency, p.monetary),
        section(_actions_text(p.actions)),
        context(f"Model {model_version}" + (f" · asked by <@{asked_by}>" if asked_by else "")),
    ]
    if p.note:
        blocks.insert(4, context(f":information_source: {p.note}"))
    if shareable:
        value = json.dumps({"r": p.recency, "f": p.frequency, "m": p.monetary})
        blocks.append({"type": "actions", "elements": [button("Share in channel", "share_prediction", value)]})
    text = f"{p.segment}: {p.description} (R {p.recency:,.0f} days, F {p.frequency:,.0f}, M {money(p.monetary)})"
    return {"text": text, "blocks": blocks}


def customer(a: CustomerAnswer) -> Message:
    blocks = [
        header(f"{a.segment}"),
        section(f"Customer `{a.customer_id}`\n{a.description}"),
        _rfm_fields(a.recency, a.frequency, a.monetary),
        section(_actions_text(a.actions)),
        context(f"Model {a.model_version} · values as of its snapshot date"),
    ]
    return {"text": f"Customer {a.customer_id}: {a.segment}", "blocks": blocks}


def segments(segs: list[dict[str, Any]], version: str, meta: dict[str, Any]) -> Message:
    blocks: list[dict[str, Any]] = [
        header(f"Segments · {meta['customers']:,} customers"),
        context(f"Model {version} · trained {meta['trained_at'][:16].replace('T', ' ')} UTC on {meta['source']}"),
    ]
    for s in segs:
        blocks.append({"type": "divider"})
        blocks.append(section(
            f"*{s['name']}* · {s['customers']:,} customers ({s['share']:.1%})\n_{s['description']}_\n"
            + "\n".join(f"• {a}" for a in s["actions"])
        ))
    text = "Segments: " + ", ".join(f"{s['name']} {s['customers']:,}" for s in segs)
    return {"text": text, "blocks": blocks[:50]}


def at_risk(summary: dict[str, Any]) -> Message:
    rows = summary["segments"]
    share = summary["customers"] / summary["all_customers"] if summary["all_customers"] else 0
    if not rows:
        body = ("No cluster of this model falls into an at-risk segment ("
                + ", ".join(summary["at_risk_names"]) + ").")
        return {"text": body, "blocks": [header("Churn risk"), section(body)]}
    lines = "\n".join(f"• *{r['name']}*: {r['customers']:,} customers, revenue {money(r['revenue'])}" for r in rows)
    blocks = [
        header("Churn risk"),
        section(lines),
        section(f"*Total at risk:* {summary['customers']:,} customers ({share:.1%} of all), "
                 f"revenue {money(summary['revenue'])}"),
        context(f"Model {summary['model_version']}, data as of {summary['snapshot_date']} · "
                 "revenue is the customers' total spend · "
                 f"at-risk segments: {', '.join(summary['at_risk_names'])}"),
        {"type": "actions", "elements": [button("Export at-risk customers", "export_at_risk", style="primary")]},
    ]
    text = f"At risk: {summary['customers']:,} customers, revenue {money(summary['revenue'])}"
    return {"text": text, "blocks": blocks}


def model_info(version: str, meta: dict[str, Any]) -> Message:
    sil = "n/a" if meta.get("silhouette") is None else f"{meta['silhouette']:.3f}"
    fields = [
        ("Version", version),
        ("Trained", f"{meta['trained_at'][:16].replace('T', ' ')} UTC by {meta['trained_by']}"),
        ("Data", f"{meta['source']}"),
        ("Customers", f"{meta['customers']:,} ({meta['orders']:,} orders, snapshot {meta['snapshot_date']})"),
        ("K", str(meta["k"])),
        ("Silhouette", sil),
    ]
    blocks = [
        header(f"Model {version}"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
    ]
    return {"text": f"Model {version}: {meta['customers']:,} customers, K={meta['k']}, trained {meta['trained_at']}", "blocks": blocks}


def help_message(note: str | None = None) -> Message:
    lines = "\n".join(f"`{cmd}` {what}" for cmd, what in HELP_EXAMPLES)
    blocks = []
    if note:
        blocks.append(section(note))
    blocks += [section("*Customer segments, in Slack.* Try:"), section(lines)]
    return {"text": (note + "\n" if note else "") + "Try /segment 30 2 150 or /segment help", "blocks": blocks}


def error_line(message: str) -> Message:
    return {"text": message, "blocks": [section(f":warning: {message}")]}


def plain(text: str) -> Message:
    return {"text": text, "blocks": [section(text)]}


def retrain_result(bundle: dict[str, Any], previous: dict[str, Any] | None) -> Message:
    meta = bundle["metadata"]
    before = {s["name"]: s["customers"] for s in previous["segments"]} if previous else {}
    width = max(len(s["name"]) for s in bundle["segments"])
    rows = []
    for s in bundle["segments"]:
        if not previous:
            change = ""
        elif s["name"] in before:
            d = s["customers"] - before[s["name"]]
            change = f"{'▲' if d > 0 else '▼' if d < 0 else '='}{abs(d):,}" if d else "="
        else:
            change = "new"
        rows.append(f"{s['name']:<{width}}  {s['customers']:>9,}  {s['share']:>6.1%}  {change}")
    gone = [n for n in before if n not in {s["name"] for s in bundle["segments"]}]
    table = "```\n" + "\n".join(rows) + "\n```"
    vs = f" · compared with {previous['version']}" if previous else ""
    blocks = [
        header(f"Retrained: model {bundle['version']} is now serving"),
        section(f"{meta['customers']:,} customers from {meta['source']} · K={meta['k']} · "
                 f"silhouette {meta['silhouette']:.3f}" if meta.get("silhouette") is not None else
                 f"{meta['customers']:,} customers from {meta['source']} · K={meta['k']}"),
        section(table),
    ]
    if gone:
        blocks.append(context("No longer found: " + ", ".join(gone)))
    blocks.append(context(f"Trained by <@{meta['trained_by']}>{vs}"))
    return {"text": f"Retrained: model {bundle['version']} is now serving ({meta['customers']:,} customers)", "blocks": blocks}
