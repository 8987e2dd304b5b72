"""The ``segment`` command."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, SegmentationError
from .sources import describe_exclusions


class FriendlyParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class Command:
    """A subcommand contributed from outside the package (the bot adds ``bot`` and ``chat``)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# -- helpers --------------------------------------------------------------------------------


def _store(args: argparse.Namespace):
    from .signing import load_key
    from .store import ModelStore, keep_bytes

    return ModelStore(args.artifacts, key=load_key(args.artifacts, os.environ), max_bytes=keep_bytes(os.environ))


def _served(args: argparse.Namespace):
    from .service import SegmentService

    return SegmentService(_store(args)).served()


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.quiet:
        return None
    return lambda line: print(line + ("" if line.endswith("…") else "…"), file=sys.stderr, flush=True)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date; use YYYY-MM-DD, e.g. 2018-09-01") from None


def k_value(text: str) -> int:
    from .model import MIN_K
    from .training import MAX_K

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not MIN_K <= value <= MAX_K:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_K} (one segment per recency band at least) and {MAX_K}, got {value}"
        )
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, got {value}")
    return value


def sample_value(text: str) -> int | None:
    """--sample: a number of customers (at least 1,000) or ``all``."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of customers or 'all', got '{text[:20]}'") from None
    if value < 1_000:
        raise argparse.ArgumentTypeError(f"must be at least 1000 (or 'all'), got {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# -- commands --------------------------------------------------------------------------------


def resolve_source(args: argparse.Namespace):
    """The source named by --data and the column flags; the built-in sample without --data."""
    from .engines import mask
    from .sample import ensure_default_sample
    from .sources import source_from_spec

    data = args.data
    if data is None:
        folder = Path(args.artifacts) / "samples"
        if not args.quiet and not any(folder.glob("*/.complete")):
            print("Generating the built-in sample data (100,000 orders, first use only)…", file=sys.stderr)
        data = ensure_default_sample(folder)
    return source_from_spec(
        data,
        customer_col=args.customer_col,
        date_col=args.date_col,
        order_col=args.order_col,
        amount_col=args.amount_col,
        quantity_col=args.quantity_col,
        price_col=args.price_col,
        category_col=args.category_col,
        date_format=args.date_format,
        currency=args.currency,
        table=args.table,
        query=args.query,
        schema=args.schema,
        layout=args.layout,
    ), mask(str(data))


def add_column_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", help="database or Spark source: the table of orders or order lines")
    p.add_argument("--query", help="database or Spark source: a query giving orders or order lines (in its SQL)")
    p.add_argument("--schema", help="database source: the schema (or MySQL database) of --table or the Olist tables")
    p.add_argument(
        "--layout", choices=("olist", "transactions"), help="database source: olist reads the three Olist tables"
    )
    p.add_argument("--customer-col", help="transactions file: customer id column")
    p.add_argument("--order-col", help="transactions file: order id column (default: each row is an order)")
    p.add_argument("--date-col", help="transactions file: order date column")
    p.add_argument("--amount-col", help="transactions file: amount column")
    p.add_argument("--quantity-col", help="transactions file: quantity column (with --price-col)")
    p.add_argument("--price-col", help="transactions file: unit price column (with --quantity-col)")
    p.add_argument(
        "--category-col", help="transactions source: product category of each line, for the segments' personas"
    )
    p.add_argument("--date-format", help="strptime format of the date column, e.g. %%d/%%m/%%Y (default: ISO)")
    p.add_argument(
        "--currency", help="symbol shown before amounts, e.g. $ or € (default: R$ for the Olist layout, none otherwise)"
    )


def source_from_data_spec(spec: str | None, artifacts: str | os.PathLike, name: str = "SEGMENT_DATA"):
    """A source from a one-line spec, as ``--data`` and the column flags would give it.

    ``spec`` is e.g. ``sales.csv --customer-col email --date-col created_at --amount-col total``;
    empty means the built-in sample. Returns (source, the data reference for the metadata).
    """
    import shlex

    p = FriendlyParser(prog=name, add_help=False)
    p.add_argument("data", nargs="?")
    add_column_options(p)
    try:
        args = p.parse_args(shlex.split(spec or ""))
    except (InputError, ValueError) as exc:
        raise InputError(f"{name}: {exc}") from None
    args.artifacts, args.quiet = str(artifacts), True
    return resolve_source(args)


def train_json(version: str, trained) -> dict[str, Any]:
    info = trained.info
    return {
        "model_version": version,
        "customers": info.customers,
        "orders": info.orders,
        "one_time_share": info.one_time_share,
        "excluded": dict(info.excluded),
        "source": info.source,
        "snapshot_date": info.snapshot_date,
        "k": info.k,
        "seed": info.seed,
        "silhouette": info.silhouette,
        "terms": trained.terms.as_json(),
        "segments": [s.as_json() for s in trained.segments],
        "at_risk": {**trained.at_risk.as_json(), "model_version": version},
        "changes": trained.changes.as_json() if trained.changes else None,
        "rule_based": trained.rule_based.as_json(),
        "timings": dict(info.timings),
        "fitted_on": getattr(trained.model, "fit_size_", info.customers),
        "rule_cells": trained.rule_cells,
        "kmeans_segments": len(trained.segments) - trained.rule_cells,
        "chance": None if trained.chance is None else trained.chance.as_json(),
        "futures": None if trained.futures is None else trained.futures.as_json(),
        "horizon_note": trained.horizon_note,
    }


def cmd_train(args: argparse.Namespace) -> int:
    from . import text
    from .training import train

    source, data_ref = resolve_source(args)
    version, trained = train(
        source,
        _store(args),
        k=args.k,
        seed=args.seed,
        as_of=args.as_of,
        trained_by=args.trained_by or os.environ.get("USER") or "cli",
        data_ref=data_ref,
        progress=_progress(args),
        sample=args.sample,
    )
    if args.json:
        _print_json(train_json(version, trained))
        return 0
    info = trained.info
    sil = "n/a" if info.silhouette is None else f"{info.silhouette:.3f}"
    print(f"Trained model {version} on {info.source}")
    print(
        f"  {info.orders:,} orders from {info.customers:,} customers "
        f"({info.one_time_share:.1%} bought once); snapshot date {info.snapshot_date} "
        f"(latest purchase {info.latest_purchase})"
    )
    print(f"  excluded: {describe_exclusions(info.excluded)}")
    fitted = getattr(trained.model, "fit_size_", info.customers)
    on = f"; KMeans fitted on a stratified sample of {fitted:,}" if fitted < info.customers else ""
    print(f"  K = {info.k} (seed {info.seed}){on}, silhouette {sil} on a {info.silhouette_sample:,}-customer sample")
    print(f"  {trained.structure()}.")
    if trained.chance is not None:
        c = trained.chance
        print(
            f"  Chance to buy again within {c.horizon:,} days: learned from {c.rows:,} customer-windows at "
            f"{len(c.cutoffs)} earlier dates ({min(c.cutoffs)} to {max(c.cutoffs)}), {c.base_rate:.1%} of whom bought again"
            + (f"; {trained.horizon_note}" if trained.horizon_note else "")
            + "."
        )
    elif trained.horizon_note:
        print(f"  No chance to buy again: {trained.horizon_note}.")
    print()
    print(text.terms_block(trained.terms))
    print()
    print(text.segments_table(trained.segments, trained.terms, trained.futures))
    print()
    print(text.at_risk_block(trained.at_risk, trained.terms))
    personas = text.personas_block(trained.segments)
    if personas:
        print()
        print(personas)
    if trained.changes is not None:
        print()
        print(f"Compared with {trained.changes.previous_version}: " + "; ".join(trained.changes.lines()))
    print()
    print(text.rule_based_block(trained.rule_based))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from . import text
    from .inputs import parse_rfm

    rfm = parse_rfm(args.values)
    served = _served(args)
    ans = served.predict(rfm)
    if args.json:
        _print_json(ans.as_json())
    else:
        print(text.answer(ans, served.terms))
    return 0


def cmd_customer(args: argparse.Namespace) -> int:
    from . import text
    from .segments import plural

    served = _served(args)
    ans = served.customer(args.customer_id)
    if args.json:
        _print_json(ans.as_json())
    else:
        gap = "" if ans.usual_gap is None else f", usually {plural(round(ans.usual_gap), 'day')} apart"
        print(
            f"Customer {ans.customer_id} (model {ans.model_version}): {ans.purchase_days} purchase "
            f"day{'s' if ans.purchase_days != 1 else ''}{gap}"
        )
        print(text.answer(ans, served.terms))
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    from . import text

    served = _served(args)
    segments = served.segments()
    if args.json:
        _print_json(
            {
                "model_version": served.version,
                "terms": served.terms.as_json(),
                "segments": [
                    {**s.as_json(), "description": s.description, "actions": list(s.actions)} for s in segments
                ],
            }
        )
        return 0
    info = served.info
    print(f"Model {served.version}: {info.customers:,} customers, trained {info.trained_at}")
    print()
    print(text.segments_table(segments, served.terms, served.trained.futures))
    for s in segments:
        print()
        print(f"{s.name}: {s.description}")
        print(f"  Definition: {s.definition}.")
        print(f"  {s.typical(served.terms)[0].upper()}{s.typical(served.terms)[1:]}.")
        future = s.future_text(served.trained.futures)
        if future:
            print(f"  What it did next: {future[0].upper()}{future[1:]}.")
        if s.persona is not None:
            print(f"  Persona: {s.persona.line()}.")
        for a in s.actions:
            print(f"  - {a}")
    return 0


def cmd_at_risk(args: argparse.Namespace) -> int:
    from . import text

    served = _served(args)
    summary = served.at_risk()
    if args.out:
        names, n = served.export_at_risk(args.out, _store(args))
        print(f"Wrote {n:,} customers at risk ({', '.join(names) or 'none'}) to {args.out}")
        return 0
    if args.json:
        _print_json(summary.as_json())
    else:
        print(text.at_risk_table(summary, served.terms))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    served = _served(args)
    names, n = served.export(served.resolve(args.segment), args.out, _store(args))
    print(f"Wrote {n:,} customers of {', '.join(names)} to {args.out}")
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from .sample import write_sample

    def show(done: int, total: int) -> None:
        print(f"\r  {done:,} / {total:,} orders", end="", file=sys.stderr, flush=True)

    write_sample(args.out, orders=args.orders, seed=args.seed, progress=None if args.quiet else show, shape=args.shape)
    if not args.quiet:
        print(file=sys.stderr)
    print(f"Wrote {args.orders:,} orders of a {args.shape} shop (seed {args.seed}) in the Olist layout to {args.out}")
    return 0


def model_json(store) -> dict[str, Any]:
    """Every version with its metadata and whether it can be served (``damaged`` says why not);
    one unreadable manifest is listed as damaged, never breaks the listing."""
    try:
        current = store.current_version()
    except SegmentationError:
        current = None
    versions = []
    for v in store.versions():
        try:
            manifest = store.info(v, verify=False).manifest
        except SegmentationError:
            manifest = {}
        meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
        versions.append(
            {
                "version": v,
                "current": v == current,
                "damaged": store.problem(v),
                **{
                    k: meta.get(k)
                    for k in ("trained_at", "trained_by", "source", "customers", "k", "seed", "silhouette")
                },
                "terms": manifest.get("terms"),
                "at_risk_rule": manifest.get("at_risk_rule"),
            }
        )
    served = next((v for v in versions if v["current"] and not v["damaged"]), None)
    return {
        "current": current,
        "versions": versions,
        "terms": served["terms"] if served else None,
        "at_risk_rule": served["at_risk_rule"] if served else None,
    }


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def cmd_model(args: argparse.Namespace) -> int:
    from . import text

    store = _store(args)
    info = model_json(store)
    current = next((v for v in info["versions"] if v["current"]), None)
    broken = current is not None and current["damaged"]
    if args.json:
        _print_json(info)
        return 1 if broken else 0
    if not info["versions"]:
        raise SegmentationError("No model yet: run 'segment train' first.")
    rows = [
        [
            ("! " if v["current"] and v["damaged"] else "* " if v["current"] else "  ") + v["version"],
            "DAMAGED" if v["damaged"] else "ok",
            _cell(v["trained_at"]),
            _cell(v["trained_by"]),
            _cell(v["source"]),
            _cell(v["customers"], "{:,}"),
            _cell(v["k"]),
            _cell(v["silhouette"], "{:.3f}"),
        ]
        for v in reversed(info["versions"])
    ]
    print(
        text.table(("Version", "State", "Trained at", "By", "Data", "Customers", "K", "Silhouette"), rows, "llllllrr")
    )
    for v in reversed(info["versions"]):
        if v["damaged"]:
            print(f"  {v['version']}: {v['damaged']}")
    if current is not None and broken:
        print(
            f"segment: the served version {current['version']} is damaged and cannot answer; roll back or retrain.",
            file=sys.stderr,
        )
        return 1
    if info["terms"]:
        from .terms import ShopTerms

        terms = ShopTerms(**info["terms"])
        print()
        print(f"Served model {info['current']}: " + text.terms_block(terms))
        if info["at_risk_rule"]:
            print(f"  At risk: {info['at_risk_rule']['text']}.")
    return 0


def cmd_rekey(args: argparse.Namespace) -> int:
    """Rotate the model key: a new key signs every version that verifies with the old one."""
    from . import signing

    store = _store(args)
    key = store.key
    if key.file is not None and not key.previous:  # a key file, no rotation under way: start one
        key = signing.new_key_file(key)
    elif key.file is None and not key.previous:
        raise SegmentationError(
            f"the model key comes from {signing.KEY_ENV}: set {signing.PREVIOUS_KEY_ENV} to the old value and "
            f"{signing.KEY_ENV} to a new one, then run `segment rekey` again"
        )
    done, refused = store.rekey(key)
    signing.finish_rotation(key)
    print(f"Re-signed {len(done)} model version(s) with the new key from {key.origin}.")
    if refused:
        print(f"Left alone (damaged or signed with an unknown key, so never served): {', '.join(refused)}.")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    old, new = _store(args).rollback()
    print(f"Rolled back: now serving {new} (was {old}).")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from . import text, validate
    from .sources import load_rfm

    source, _ = resolve_source(args)
    progress = _progress(args)
    if progress:
        progress(f"Reading {source.describe()} and computing RFM")
    table = load_rfm(source, as_of=args.as_of)
    report = validate.run(table, k=args.k, progress=progress)
    if args.json:
        _print_json(validation_json(report))
    else:
        print(text.validation(report))
    return 0 if report.passed else 1


def cmd_report(args: argparse.Namespace) -> int:
    """The HTML report: on --data, trained in memory for it (nothing saved); else the served model."""
    from . import report as report_mod

    progress = _progress(args)
    if args.data is not None:
        from .sources import opened
        from .training import fit, with_personas

        source, data_ref = resolve_source(args)
        with opened(source, args.as_of, personas=True) as src:
            if progress:
                progress(f"Reading {source.describe()} and computing RFM")
            table = src.rfm()
            if progress:
                progress(f"Training K={args.k} for the report (nothing is saved)")
            trained, assignments = fit(table, k=args.k, seed=args.seed, data_ref=data_ref, trained_by="report")
            if progress:
                progress("Describing what each segment buys")
            trained = with_personas(trained, src.personas(trained, table.snapshot_date))
        version = None
        frame, labels = assignments, assignments["cluster"].to_numpy()
    else:
        served = _served(args)
        trained, version = served.trained, served.version
        frame = served.assignments.frame()
        labels = frame["cluster"].to_numpy()
    rep = report_mod.build(trained, frame, labels, version, progress)
    out = report_mod.write_html(rep, args.out)
    if args.json:
        _print_json({**rep.as_json(), "report": str(out)})
        return 0
    d = rep.diagnostics
    print(
        f"Wrote {out} ({out.stat().st_size / 1024:,.0f} KB): {len(trained.segments)} segments of {trained.info.customers:,} customers"
    )
    print(f"  Choosing K: {d.kscan.recommendation}")
    if d.scan_note:
        print(f"  {d.scan_note}")
    for a in d.algorithms:
        print(
            f"  {a.name}: {a.clusters} cluster{'' if a.clusters == 1 else 's'}, {a.noise_share:.1%} noise, silhouette "
            f"{'n/a' if a.silhouette is None else f'{a.silhouette:.3f}'}, ARI vs the segments {a.ari:.2f}"
        )
    print(f"  {d.recommendation}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from . import backtest, text

    if args.as_of is not None and args.cutoffs is not None:
        raise InputError("give --as-of (one cut-off) or --cutoffs (several), not both")
    source, _ = resolve_source(args)
    bt = backtest.run(
        source,
        horizon=args.horizon,
        cutoffs=args.cutoffs or backtest.DEFAULT_CUTOFFS,
        as_of=args.as_of,
        k=args.k,
        seed=args.seed,
        progress=_progress(args),
    )
    if args.json:
        _print_json(backtest_json(bt))
    else:
        print(text.backtest(bt, source.currency))
    return 1 if bt.failed else 0  # like validate: a name the future contradicted beyond chance


def backtest_json(bt) -> dict[str, Any]:
    from dataclasses import asdict

    def result(r) -> dict[str, Any]:
        return {
            "cutoff": r.cutoff.isoformat(),
            "horizon_days": r.horizon,
            "customers": r.customers,
            "bought_again": r.returned,
            "base_rate": r.base_rate,
            "terms": dict(zip(("return_time", "return_window", "lost_after"), r.terms)),
            "rule_cells": r.rule_cells,
            "kmeans_segments": r.kmeans_segments,
            "segments": [
                {
                    "name": s.name,
                    "base": s.base,
                    "claimed": None if s.claimed is None else s.claimed.as_json(),
                    **s.future.as_json(),
                }
                for s in r.segments
            ],
            "at_risk": r.flagged.as_json(),
            "not_at_risk": r.not_flagged.as_json(),
            "tiers": r.tiers.as_json(),
            "auc": r.auc,
            "chance_lead": {
                k: None if v is None else {"difference": v[0], "interval": [v[1], v[2]]} for k, v in r.chance_vs.items()
            },
            "calibration": None if r.calibration is None else asdict(r.calibration),
            "claims": [asdict(c) for c in r.claims],
            "seconds": r.seconds,
        }

    return {
        "source": bt.source,
        "horizon_days": bt.horizon,
        "horizon_reason": bt.horizon_reason,
        "claims_failed": [{"cutoff": c.isoformat(), **asdict(x)} for c, x in bt.failed],
        "claims_within_chance": [{"cutoff": c.isoformat(), **asdict(x)} for c, x in bt.unsettled],
        "skipped": list(bt.skipped),
        "cutoffs": [result(r) for r in bt.results],
        "mean_auc": bt.mean_auc(),
    }


def validation_json(r) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "source": r.source,
        "customers": r.customers,
        "k": r.trained.info.k,
        "terms": r.trained.terms.as_json(),
        "segments": [asdict(s) for s in r.segments],
        "at_risk": r.at_risk.as_json(),
        "runs": [{**asdict(x), "names": list(x.names)} for x in r.runs],
        "seed_names_same": r.seed_names_same,
        "seed_max_change": r.seed_max_change,
        "at_risk_max_change": r.at_risk_max_change,
        "invariants": {**asdict(r.invariants), "hold": r.invariants.hold},
        "palive": asdict(r.palive),
        "futures": [asdict(c) for c in r.futures],
        "futures_hold": r.futures_hold,
        "tiers": None if r.trained.futures is None else r.trained.futures.as_json(),
        "passed": r.passed,
    }


# -- parser ----------------------------------------------------------------------------------


def build_parser(extra: Sequence[Command] = ()) -> argparse.ArgumentParser:
    parser = FriendlyParser(
        prog="segment",
        description="Customer segments from order history: RFM, KMeans and a marketing playbook.",
    )
    parser.add_argument(
        "--artifacts",
        default=os.environ.get("SEGMENT_ARTIFACTS", "artifacts"),
        help="folder for models and the built-in sample (default: $SEGMENT_ARTIFACTS or ./artifacts)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    # -q is accepted after the subcommand too (segment train -q).
    common = FriendlyParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=FriendlyParser)
    sub.required = True
    _add = sub.add_parser

    def add_parser(name: str, **kw):
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data",
            help="Olist folder, CSV/Parquet transactions file, database URL (postgresql://…, mysql://…) or "
            "spark:TABLE-OR-PATH (default: the built-in sample)",
        )
        p.add_argument("--k", type=k_value, default=11, help="number of segments (default 11)")
        p.add_argument(
            "--as-of", type=parse_date, help="snapshot date YYYY-MM-DD (default: day after the latest purchase)"
        )
        add_column_options(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("train", help="train a model and print the segment table")
    data_options(p)
    p.add_argument("--seed", type=seed_value, default=42, help="KMeans random seed (default 42)")
    p.add_argument(
        "--sample",
        type=sample_value,
        default=200_000,
        help="fit KMeans on a stratified sample of this many customers, then score everyone "
        "(default 200000; 'all' fits on everyone)",
    )
    p.add_argument("--trained-by", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="the segment of an R F M profile, e.g. predict 30 2 150")
    p.add_argument("values", nargs="*", metavar="R F M", help="recency (days), frequency (orders), monetary (spend)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("customer", help="the segment of one customer of the training data")
    p.add_argument("customer_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_customer)

    p = sub.add_parser("segments", help="every segment with its definition, size and recommended actions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_segments)

    p = sub.add_parser("at-risk", help="customers at risk of churning and their revenue, by segment")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="write the customers at risk to this CSV file instead")
    p.set_defaults(func=cmd_at_risk)

    p = sub.add_parser("export", help="write one segment's customers to a CSV file")
    p.add_argument("segment", help='segment name, e.g. "At Risk" (a base name exports all its clusters)')
    p.add_argument("--out", required=True, help="CSV file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("validate", help="check a source's segments against their definitions, and their stability")
    data_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "backtest",
        help="train as of earlier cut-offs and check what the model said against the orders that followed",
    )
    data_options(p)
    p.add_argument("--seed", type=seed_value, default=42, help="KMeans random seed (default 42)")
    p.add_argument(
        "--cutoffs",
        type=positive_int,
        help="how many cut-offs, a return window apart, the last a return window before the data's end (default 3)",
    )
    p.add_argument(
        "--horizon",
        type=positive_int,
        help="days after each cut-off to compare with (default: each model's own, as served)",
    )
    for action in p._actions:
        if action.dest == "as_of":
            action.help = "one cut-off YYYY-MM-DD instead of --cutoffs (its orders are history, the later ones are not)"
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser(
        "report", help="an HTML report: segments, personas, choosing K, and what GMM, HDBSCAN and DBSCAN find"
    )
    data_options(p)
    p.set_defaults(data=None)
    p.add_argument("--seed", type=seed_value, default=42, help="KMeans random seed with --data (default 42)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sample-data", help="write synthetic order history in the Olist layout")
    p.add_argument("--orders", type=positive_int, default=100_000)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=seed_value, default=42)
    p.add_argument(
        "--shape",
        choices=("marketplace", "wholesale", "catalogue"),
        default="marketplace",
        help="marketplace (97%% buy once), wholesale (customers return every few weeks) or "
        "catalogue (three years, most customers lapsed)",
    )
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("model", help="the saved model versions and the served model's terms; * marks the served one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("rekey", help="rotate the model key: re-sign every version with a new key")
    p.set_defaults(func=cmd_rekey)

    p = sub.add_parser("rollback", help="serve the previous model version")
    p.set_defaults(func=cmd_rollback)

    for command in extra:
        p = sub.add_parser(command.name, help=command.help)
        command.configure(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None, extra: Sequence[Command] = ()) -> int:
    parser = build_parser(extra)
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except SegmentationError as exc:
        print(f"segment: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("segment: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback at a user; SEGMENT_DEBUG=1 shows it
        if os.environ.get("SEGMENT_DEBUG"):
            raise
        print(
            f"segment: unexpected error: {type(exc).__name__}: {exc} (set SEGMENT_DEBUG=1 for details)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
