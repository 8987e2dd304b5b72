"""``segment report``: one self-contained HTML file on a model and why its segments are what they are.

The segment table as the CLI shows it (names, definitions, typical numbers, sizes, revenue,
churn risk, personas), charts of the segment sizes, the segments' profiles and the RFM distributions with
the shop's return time and window marked, the K diagnostics and the other algorithms
(``diagnostics``), and the model's metadata. Charts are PNG images inside the file and the CSS
is inline: nothing is fetched when it is opened. The HTML comes from a Jinja2 template
(``templates/report.html``), which escapes every value.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentation.analysis import diagnostics
from segmentation.model.estimator import FEATURES
from segmentation.model.segments import TrainedModel
from segmentation.serving.answers import share_text
from segmentation.serving.atomic import atomic_write_bytes

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Report:
    version: str | None  # None: trained for this report, not saved
    trained: TrainedModel
    diagnostics: diagnostics.Diagnostics
    charts: dict[str, str]  # name -> data: URI of a PNG
    made_at: str

    def as_json(self) -> dict[str, Any]:
        t = self.trained
        info = t.info
        return {
            "model": {
                "version": self.version,
                "saved": self.version is not None,
                "trained_at": info.trained_at,
                "trained_by": info.trained_by,
                "source": info.source,
                "data": info.data,
                "customers": info.customers,
                "orders": info.orders,
                "snapshot_date": info.snapshot_date,
                "k": info.k,
                "seed": info.seed,
                "silhouette": info.silhouette,
                "silhouette_sample": info.silhouette_sample,
            },
            "terms": t.terms.as_json(),
            "segments": [s.as_json() for s in t.segments],
            "at_risk": t.at_risk.as_json(),
            "diagnostics": self.diagnostics.as_json(),
            "made_at": self.made_at,
        }


def build(
    trained: TrainedModel,
    frame: pd.DataFrame,
    labels: np.ndarray,
    version: str | None,
    progress: Progress | None = None,
) -> Report:
    """The report's figures for a trained model and its customers (``frame``: the RFM columns;
    ``labels``: each customer's segment)."""
    say = progress or (lambda _: None)
    found = diagnostics.run(trained, frame, labels, say)
    say("Drawing the charts")
    charts = _charts(trained, frame, np.asarray(labels), found)
    return Report(version, trained, found, charts, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def write_html(report: Report, path: str | Path) -> Path:
    """The report as one HTML file, written atomically."""
    out = Path(path)
    atomic_write_bytes(out, render(report).encode("utf-8"))
    return out


def render(report: Report) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("segmentation.analysis", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    t = report.trained
    terms = t.terms
    rows = [
        {
            "name": s.name,
            "customers": f"{s.customers:,}",
            "share": f"{share_text(s.share)}",
            "revenue_share": f"{share_text(s.revenue_share)}",
            "recency": f"{s.recency_median:,.0f}",
            "orders": f"{s.frequency_median:g}",
            "spend": terms.money(s.monetary_median),
            "at_risk": f"{s.at_risk:,}",
            "fit": f"{s.check.fit:.0%}",
            "passed": s.check.passed,
            "definition": s.definition,
            "persona": s.persona.line() if s.persona is not None else "",
            "description": s.description,
        }
        for s in t.segments
    ]
    d = report.diagnostics
    k_rows = [
        {
            "k": seg.k,
            "served": seg.k == d.kscan.served_k,
            "inertia": f"{seg.inertia:,.0f}",
            "silhouette": _num(seg.silhouette),
            "stability": f"{seg.stability:.2f}",
            "free_inertia": f"{free.inertia:,.0f}",
            "free_silhouette": _num(free.silhouette),
            "free_stability": f"{free.stability:.2f}",
        }
        for seg in d.kscan.segments
        for free in [d.kscan.at(seg.k, free=True)]
    ]
    algo_rows = [
        {
            "name": a.name,
            "settings": a.settings,
            "clusters": a.clusters,
            "sizes": ", ".join(f"{n:,}" for n in a.sizes[:8]) + (" …" if len(a.sizes) > 8 else ""),
            "noise": f"{a.noise_share:.1%}",
            "silhouette": _num(a.silhouette),
            "ari": f"{a.ari:.2f}",
            "band_mix": f"{a.band_mix:.0%}",
            "findings": a.findings,
        }
        for a in d.algorithms
    ]
    fut = t.futures
    future_rows = []
    if fut is not None:
        for name, f in [*((s.name, s.future) for s in t.segments), *((f"tier: {n}", f) for n, f in fut.items())]:
            if f is None:
                continue
            lo, hi = f.interval
            future_rows.append(
                {
                    "name": name,
                    "customers": f"{f.customers:,}",
                    "rate": f"{f.rate:.1%}" if f.customers else "-",
                    "interval": f"{lo:.1%}–{hi:.1%}" if f.customers else "-",
                    "spend": terms.money(f.spend_per_customer) if f.customers else "-",
                }
            )
    return env.get_template("report.html").render(
        report=report,
        future_rows=future_rows,
        futures=fut,
        structure=t.structure(),
        stake=t.at_risk.stake(terms.money),
        info=t.info,
        terms_lines=terms.lines(),
        rows=rows,
        at_risk=t.at_risk,
        money=terms.money,
        k_rows=k_rows,
        algo_rows=algo_rows,
        d=d,
        charts=report.charts,
        num=_num,
    )


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# -- charts ------------------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# Okabe–Ito: a qualitative palette told apart with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SAFE, RISK = OKABE_ITO[0], OKABE_ITO[5]
CLIP = 2.5  # profile colours saturate at this many standard deviations; the numbers are unclipped


def _legend_above(ax, ncol: int) -> None:
    """A legend in the margin above the axes, where it covers no bar or curve."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=ncol, fontsize=8, frameon=False)


def _profiles(plt, trained: TrainedModel, frame: pd.DataFrame, labels: np.ndarray, segs: list) -> str:
    """Each segment's profile (what a snake plot shows, readable with any number of segments):
    a row per segment, a column per feature, coloured by the segment's mean standard score of
    log(1 + value) against all customers (clipped at ±CLIP for the colour only) and labelled
    with the segment's median and that score."""
    Z = trained.model.transform(frame[FEATURES].to_numpy(np.float64))
    shown = [s for s in segs if (labels == s.cluster).any()]
    means = np.array([Z[labels == s.cluster].mean(axis=0) for s in shown]).reshape(len(shown), len(FEATURES))
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(shown) + 1.6))
    image = ax.imshow(np.clip(means, -CLIP, CLIP), cmap="RdBu_r", vmin=-CLIP, vmax=CLIP, aspect="auto")
    money = trained.terms.money
    for i, s in enumerate(shown):
        medians = (
            f"{s.recency_median:,.0f} days",
            f"{s.occasions_median:g} purchase day{'s' if s.occasions_median != 1 else ''}",
            money(s.monetary_median),
        )
        for j, text in enumerate(medians):
            dark = abs(means[i, j]) > CLIP * 0.6
            ax.text(
                j,
                i,
                f"{text}  ({means[i, j]:+.1f})",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "#111",
            )
    ax.set_xticks(range(len(FEATURES)), ["Days since the last order", "Purchase days", "Spend"], fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(shown)), [f"{s.name} ({s.customers:,})" for s in shown], fontsize=8)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(f"standard score of log(1 + value), clipped at ±{CLIP:g}", fontsize=8)
    ax.set_title("Segment profiles: each cell the segment's median (its standard score)", fontsize=10, pad=24)
    return _png(fig)


def _charts(
    trained: TrainedModel, frame: pd.DataFrame, labels: np.ndarray, d: diagnostics.Diagnostics
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segs = list(trained.segments)
    names = [s.name for s in segs]
    out = {}

    fig, ax = plt.subplots(figsize=(9, 0.38 * len(segs) + 1.4))
    y = np.arange(len(segs))[::-1]
    total = np.array([s.customers for s in segs])
    risky = np.array([s.at_risk for s in segs])
    ax.barh(y, total - risky, color=SAFE, label="customers not at risk")
    ends = ax.barh(y, risky, left=total - risky, color=RISK, label="customers at risk")
    ax.bar_label(ends, labels=[f"{n:,}" for n in total], padding=3, fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("customers")
    ax.margins(x=0.12)
    ax.spines[["top", "right"]].set_visible(False)
    _legend_above(ax, ncol=2)
    ax.set_title("Segment sizes", pad=28)
    out["sizes"] = _png(fig)

    out["snake"] = _profiles(plt, trained, frame, labels, segs)

    terms = trained.terms
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, col, label in zip(
        axes, ("recency", "occasions", "monetary"), ("days since the last order", "purchase days", "spend")
    ):
        v = frame[col].to_numpy(np.float64) + (1 if col == "recency" else 0)
        v = v[v > 0]
        bins = np.geomspace(max(v.min(), 0.5), v.max() + 1, 40)
        ax.hist(v, bins=bins, color=OKABE_ITO[4])  # sky blue: the marked days stand out against it
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label + (" + 1 (log scale)" if col == "recency" else " (log scale)"))
        if col == "recency":
            for x, what, c in (
                (terms.return_time, "return time", OKABE_ITO[1]),
                (terms.return_window, "return window", OKABE_ITO[5]),
                (terms.lost_after, "lost after", OKABE_ITO[7]),
            ):
                ax.axvline(x + 1, color=c, lw=1.8, label=f"{what}: {x} days")
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    axes[0].set_ylabel("customers (log scale)")
    fig.suptitle("RFM distributions")
    fig.tight_layout()
    out["distributions"] = _png(fig)

    fut = trained.futures
    if fut is not None:
        rows = [(s.name, s.future) for s in segs if s.future is not None and s.future.customers]
        rows += [(f"tier: {n}", f) for n, f in fut.items() if f.customers]
        fig, ax = plt.subplots(figsize=(8, 0.38 * len(rows) + 1.2))
        y = np.arange(len(rows))[::-1]
        rate = np.array([f.rate for _, f in rows]) * 100
        lo = np.array([f.interval[0] for _, f in rows]) * 100
        hi = np.array([f.interval[1] for _, f in rows]) * 100
        colors = [SAFE if not n.startswith("tier:") else OKABE_ITO[4] for n, _ in rows]
        ax.barh(y, rate, color=colors)
        ax.errorbar(rate, y, xerr=[rate - lo, hi - rate], fmt="none", ecolor="#222", capsize=3, lw=1)
        ax.set_yticks(y, [n for n, _ in rows], fontsize=8)
        ax.set_xlabel(f"% who bought again within {fut.horizon} days (95% interval)")
        ax.set_title("What each segment's customers did next, at earlier dates of the history")
        ax.spines[["top", "right"]].set_visible(False)
        out["futures"] = _png(fig)

    ks = d.kscan
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, attr, title in zip(
        axes, ("inertia", "silhouette", "stability"), ("Inertia (elbow)", "Silhouette", "Stability (ARI between seeds)")
    ):
        for points, label, style in (
            (ks.segments, "segments within bands (served kind)", "-o"),
            (ks.kmeans, "free KMeans", "--s"),
        ):
            xs = [p.k for p in points if getattr(p, attr) is not None]
            ys = [getattr(p, attr) for p in points if getattr(p, attr) is not None]
            ax.plot(xs, ys, style, label=label, ms=4, color=OKABE_ITO[0 if style == "-o" else 1])
        ax.axvline(ks.served_k, color=RISK, lw=1, ls=":", label=f"served K={ks.served_k}")
        ax.set_xlabel("K")
        ax.set_title(title)
    handles, texts = axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    out["k"] = _png(fig)
    return out
