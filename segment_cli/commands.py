"""The segment commands: each reads its arguments, calls the domain and prints text or JSON."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segment_cli import text
from segment_cli.as_json import backtest_json, model_json, train_json, validation_json
from segmentation.data.kinds import describe_exclusions
from segmentation.data.spec import OpenedData, SourceOptions, open_data
from segmentation.errors import InputError, SegmentationError
from segmentation.model.segments import plural
from segmentation.model.terms import ShopTerms
from segmentation.serving import listing as listing_mod
from segmentation.serving import signing
from segmentation.serving.atomic import output_file
from segmentation.serving.inputs import parse_rfm
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore

# -- helpers --------------------------------------------------------------------------------


def _store(args: argparse.Namespace):
    return ModelStore(args.artifacts, key=args.settings.key_for(args.artifacts), max_bytes=args.settings.keep_bytes)


def _served(args: argparse.Namespace):
    return SegmentService(_store(args)).served()


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.quiet:
        return None
    return lambda line: print(line + ("" if line.endswith("…") else "…"), file=sys.stderr, flush=True)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


# -- commands --------------------------------------------------------------------------------


def resolve_source(args: argparse.Namespace) -> OpenedData:
    """The source named by --data and its flags; the built-in sample without --data."""
    return open_data(
        args.data,
        SourceOptions.from_namespace(args),
        Path(args.artifacts) / "samples",
        None if args.quiet else lambda line: print(line, file=sys.stderr),
    )


def cmd_train(args: argparse.Namespace) -> int:
    from segmentation.serving.training import train  # lazy: scikit-learn takes seconds to import

    data = resolve_source(args)
    version, trained = train(
        data.source,
        _store(args),
        k=args.k,
        seed=args.seed,
        as_of=args.as_of,
        trained_by=args.trained_by or args.settings.user or "cli",
        data_ref=data.reference,
        data_spec=data.spec,
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
    rfm = parse_rfm(args.values)
    served = _served(args)
    ans = served.predict(rfm)
    if args.json:
        _print_json(ans.as_json())
    else:
        print(text.answer(ans, served.terms))
    return 0


def cmd_customer(args: argparse.Namespace) -> int:
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
    if args.out:
        args.out = output_file(args.out, "at-risk.csv")
    served = _served(args)
    summary = served.at_risk()
    if args.out:
        names, n = served.export_at_risk(args.out, _store(args))
        print(f"Wrote {n:,} customers at risk ({'; '.join(names) or 'none'}) to {args.out}")
        return 0
    if args.json:
        _print_json(summary.as_json())
    else:
        print(text.at_risk_table(summary, served.terms))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    args.out = output_file(args.out, "segment.csv")
    served = _served(args)
    names, n = served.export(served.resolve(args.segment), args.out, _store(args))
    print(f"Wrote {n:,} customers of {'; '.join(names)} to {args.out}")
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from segmentation.data.sample import TRANSACTIONS_COLUMNS, TRANSACTIONS_FILE, write_sample  # lazy: the generator

    def show(done: int, total: int) -> None:
        print(f"\r  {done:,} / {total:,} orders", end="", file=sys.stderr, flush=True)

    out = write_sample(
        args.out,
        orders=args.orders,
        seed=args.seed,
        progress=None if args.quiet else show,
        shape=args.shape,
        layout=args.layout,
    )
    if not args.quiet:
        print(file=sys.stderr)
    shop = f"{args.orders:,} orders of a {args.shape} shop (seed {args.seed})"
    if args.layout == "olist":
        print(f"Wrote {shop} in the Olist layout to {args.out}")
        return 0
    flags = " ".join(f"--{key.replace('_', '-')} {name}" for key, name in TRANSACTIONS_COLUMNS.items())
    print(f"Wrote {shop}, the delivered ones, to {out / TRANSACTIONS_FILE}")
    print(f"Train on it with: segment train --data {shlex.quote(str(out / TRANSACTIONS_FILE))} {flags}")
    return 0


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def cmd_model(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.json:
        info = model_json(store)
        broken = any(v["current"] and v["damaged"] for v in info["versions"])
        _print_json(info)
        return 1 if broken else 0
    listing = listing_mod.summaries(store)
    if not listing:
        raise SegmentationError("No model yet: run 'segment train' first.")
    current = next((v for v in listing if v.current), None)
    rows = [
        [
            ("! " if v.current and v.damaged else "* " if v.current else "  ") + v.version,
            "DAMAGED" if v.damaged else "ok",
            _cell(v.trained_at),
            _cell(v.trained_by),
            _cell(v.source),
            _cell(v.customers, "{:,}"),
            _cell(v.k),
            _cell(v.silhouette, "{:.3f}"),
        ]
        for v in reversed(listing)
    ]
    print(
        text.table(("Version", "State", "Trained at", "By", "Data", "Customers", "K", "Silhouette"), rows, "llllllrr")
    )
    for v in reversed(listing):
        if v.damaged:
            print(f"  {v.version}: {v.damaged}")
    if current is not None and current.damaged:
        print(
            f"segment: the served version {current.version} is damaged and cannot answer; roll back or retrain.",
            file=sys.stderr,
        )
        return 1
    serving = listing_mod.served(listing)
    if serving is not None and serving.terms:
        print()
        print(f"Served model {serving.version}: " + text.terms_block(ShopTerms(**serving.terms)))
        if serving.at_risk_rule:
            print(f"  At risk: {serving.at_risk_rule['text']}.")
    return 0


def cmd_rekey(args: argparse.Namespace) -> int:
    """Rotate the model key: a new key signs every version that verifies with the old one."""
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


def cmd_serve(args: argparse.Namespace) -> int:
    old, new = _store(args).serve(args.version)
    print(f"Now serving {new} (was {old or 'none'}).")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from segment_cli import checks_text  # lazy: it imports the checks (scikit-learn)
    from segmentation.analysis import validate  # lazy: scikit-learn takes seconds to import
    from segmentation.data.sources import load_rfm  # lazy: SQLGlot and the engines

    source = resolve_source(args).source
    progress = _progress(args)
    if progress:
        progress(f"Reading {source.describe()} and computing RFM")
    table = load_rfm(source, as_of=args.as_of)
    report = validate.run(table, k=args.k, progress=progress)
    if args.json:
        _print_json(validation_json(report))
    else:
        print(checks_text.validation(report))
    return 0 if report.passed else 1


def cmd_report(args: argparse.Namespace) -> int:
    """The HTML report: on --data, trained in memory for it (nothing saved); else the served model."""
    from segmentation.analysis import report as report_mod  # lazy: matplotlib takes a second to import

    args.out = output_file(args.out, "report.html")  # before minutes of work; ~ expanded
    progress = _progress(args)
    if args.data is not None:
        from segmentation.data.sources import opened  # lazy: SQLGlot and the engines
        from segmentation.serving.training import fit, with_personas  # lazy: scikit-learn, seconds to import

        data = resolve_source(args)
        with opened(data.source, args.as_of, personas=True) as src:
            if progress:
                progress(f"Reading {data.source.describe()} and computing RFM")
            table = src.rfm()
            if progress:
                progress(f"Training K={args.k} for the report (nothing is saved)")
            trained, assignments = fit(table, k=args.k, seed=args.seed, data_ref=data.reference, trained_by="report")
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
    from segment_cli import checks_text  # lazy: it imports the checks (scikit-learn)
    from segmentation.analysis import backtest  # lazy: scikit-learn takes seconds to import

    if args.as_of is not None and args.cutoffs is not None:
        raise InputError("give --as-of (one cut-off) or --cutoffs (several), not both")
    source = resolve_source(args).source
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
        print(checks_text.backtest(bt, source.currency))
    return 1 if bt.failed else 0  # like validate: a name the future contradicted beyond chance
