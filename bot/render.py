"""Block Kit as readable terminal text, for the local console."""

from __future__ import annotations

import re
from typing import Any

_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)_(?![\w_])")
_MENTION = re.compile(r"<@([A-Z0-9]+)>")
_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|[^>]*)?>")


def _mrkdwn(text: str) -> str:
    text = text.replace("```", "").replace(":warning:", "⚠").replace(":information_source:", "ℹ")
    text = _BOLD.sub(r"\1", text)
    text = _ITALIC.sub(r"\1", text)
    text = _CHANNEL.sub(r"#\1", _MENTION.sub(r"@\1", text))
    # what Slack shows for the escaped text of data and input (``mrkdwn.as_text``)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render(message: dict[str, Any], buttons: list[dict[str, Any]] | None = None) -> str:
    """Text for a message; buttons found are appended to ``buttons`` and shown as [n] labels."""
    blocks = message.get("blocks") or []
    if not blocks:
        return _mrkdwn(message.get("text") or "")
    out: list[str] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "header":
            title = b["text"]["text"]
            out += [title, "=" * len(title)]
        elif kind == "section":
            if b.get("text"):
                out.append(_mrkdwn(b["text"]["text"]))
            if b.get("fields"):
                out.append("   ".join(_mrkdwn(f["text"]).replace("\n", ": ") for f in b["fields"]))
        elif kind == "context":
            out.append("  " + " ".join(_mrkdwn(e.get("text", "")) for e in b.get("elements", [])))
        elif kind == "divider":
            out.append("-" * 40)
        elif kind == "actions":
            labels = []
            for el in b.get("elements", []):
                if el.get("type") == "button":
                    if buttons is not None:
                        buttons.append(el)
                        labels.append(f"[{len(buttons)}] {el['text']['text']}")
                    else:
                        labels.append(f"[{el['text']['text']}]")
            out.append("  ".join(labels) + ("   (type: click N)" if buttons is not None and labels else ""))
        elif kind == "image":
            out.append(f"[image: {b.get('alt_text', '')}]")
    return "\n".join(out)
