"""A digest as Block Kit and as a chart."""

from __future__ import annotations

import io
import json

import numpy as np

from segmentation.model.atrisk import STAKE_NOTE
from segmentation.serving.answers import share_text

from . import blocks
from .digest_data import DigestData


def message(data: DigestData) -> blocks.Message:
    fresh = f"Data up to {data.latest_order:%a %d %b %Y} (latest order)"
    if data.stale is not None:
        fresh = f":warning: {fresh}, {data.stale:,} days before this digest: is SEGMENT_DATA up to date?"
    since = f" since {data.previous_date:%d %b}" if data.previous_date else ""
    lines = "\n".join(f"*{s.name}*: {s.customers:,} ({share_text(s.share)}){s.change_text()}" for s in data.segments)
    risk = data.at_risk
    money = data.terms.money
    risk_lines = (
        "\n".join(f"• *{r.name}*: {r.customers:,} customers, {money(r.revenue)} at stake" for r in risk.by_segment)
        or "• none"
    )
    moved = (
        "" if data.moved_into_at_risk is None else f"\n*{data.moved_into_at_risk:,}* customers became at risk{since}."
    )
    b = [
        blocks.header(f"Customer digest · {data.run_date:%a %d %b %Y}"),
        blocks.context(f"{fresh} · model {data.model_version}"),
        blocks.section(f"*{data.customers:,} customers*" + (f" · changes{since}" if since else "")),
        blocks.section(lines),
        {"type": "divider"},
        blocks.section(
            f"*Churn risk: {risk.customers:,} customers* ({share_text(risk.share_of_customers)}), revenue at stake "
            f"{risk.stake(money)}" + moved + "\n" + risk_lines
        ),
        blocks.context(f"At risk: {risk.definition} · {STAKE_NOTE}"),
    ]
    if data.not_comparable:
        b.insert(3, blocks.context(f":information_source: {_cap(data.not_comparable)}."))
    if data.as_of != data.run_date:
        b.insert(
            2,
            blocks.section(
                f":warning: *Scored as of {data.as_of:%d %b %Y}, the day after the newest order, not today*: "
                f"the data ends {data.stale or (data.run_date - data.latest_order).days:,} days before this digest, "
                "and as of today every customer would look lost. Set SEGMENT_DIGEST_AS_OF=today to score as of "
                "the run date anyway."
            ),
        )
    elements = [blocks.button("All segments", "show_segments")]
    if risk.customers:  # nothing to export when no one is at risk
        elements.insert(
            0,
            blocks.button(
                "Export at-risk customers",
                "export_at_risk",
                json.dumps({"as_of": data.as_of.isoformat(), "model": data.model_version}),
                style="primary",
            ),
        )
    b.append({"type": "actions", "elements": elements})
    text = f"Customer digest {data.run_date:%Y-%m-%d}: {data.customers:,} customers, {risk.customers:,} at risk"
    return {"text": text, "blocks": b}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def chart_png(data: DigestData) -> bytes:
    """Horizontal bars of segment sizes, the customers at risk in red."""
    buf = io.BytesIO()
    chart_figure(data).savefig(buf, format="png")
    return buf.getvalue()


def chart_figure(data: DigestData):
    """The digest chart as a matplotlib figure (``chart_png`` renders it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = [s.name for s in data.segments][::-1]
    values = np.array([s.customers for s in data.segments][::-1])
    risky = np.array([s.at_risk for s in data.segments][::-1])
    fig = Figure(figsize=(8, 0.42 * len(names) + 1.2), dpi=100)
    ax = fig.subplots()
    # Okabe–Ito vermilion and blue: apart for every common colour-vision deficiency
    ax.barh(names, risky, color="#D55E00", label="at risk")
    bars = ax.barh(names, values - risky, left=risky, color="#0072B2", label="not at risk")
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_title(f"Customers per segment · {data.run_date:%d %b %Y} · model {data.model_version}", fontsize=10, pad=24)
    ax.set_xlabel("customers")
    # above the axes, where it covers no bar
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.15)
    fig.tight_layout()
    return fig
