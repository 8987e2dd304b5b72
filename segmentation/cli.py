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

SEGMENT_KEYS = ("name", "cluster", "customers", "share", "recency_median", "frequency_mean", "monetary_median")


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
    from .store import ModelStore

    return ModelStore(args.artifacts)


def _service(args: argparse.Namespace):
    from .service import SegmentService

    return SegmentService(_store(args))


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def _segment_rows(segments: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            s["name"],
            f"{s['customers']:,}",
            f"{s['share']:.1%}",
            f"{s['recency_median']:,.0f}" if s["recency_median"] is not None else "-",
            f"{s['frequency_mean']:.2f}" if s["frequency_mean"] is not None else "-",
            _money(s["monetary_median"]),
        ]
        for s in segments
    ]


SEGMENT_HEADERS = ("Segment", "Customers", "Share", "Recency (median days)", "Orders (mean)", "Spend (median)")


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date; use YYYY-MM-DD, e.g. 2018-09-01") from None


def k_value(text: str) -> int:
    from .training import MAX_K

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 2 <= value <= MAX_K:
        raise argparse.ArgumentTypeError(f"must be between 2 and {MAX_K}, got {value}")
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, got {value}")
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
        date_format=args.date_format,
    ), str(data)


def add_column_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customer-col", help="transactions file: customer id column")
    p.add_argument("--order-col", help="transactions file: order id column (default: each row is an order)")
    p.add_argument("--date-col", help="transactions file: order date column")
    p.add_argument("--amount-col", help="transactions file: amount column")
    p.add_argument("--quantity-col", help="transactions file: quantity column (with --price-col)")
    p.add_argument("--price-col", help="transactions file: unit price column (with --quantity-col)")
    p.add_argument("--date-format", help="strptime format of the date column, e.g. %%d/%%m/%%Y (default: ISO)")


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


def train_json(bundle: dict[str, Any]) -> dict[str, Any]:
    meta = bundle["metadata"]
    return {
        "model_version": bundle["version"],
        "customers": meta["customers"],
        "orders": meta["orders"],
        "one_time_share": meta["one_time_share"],
        "excluded": meta["excluded"],
        "source": meta["source"],
        "snapshot_date": meta["snapshot_date"],
        "k": meta["k"],
        "silhouette": meta["silhouette"],
        "segments": [{k: s[k] for k in SEGMENT_KEYS} for s in bundle["segments"]],
        "rule_based": bundle["rule_based"],
        "timings": meta.get("timings", {}),
    }


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    source, data_ref = resolve_source(args)
    bundle = train(
        source,
        _store(args),
        k=args.k,
        as_of=args.as_of,
        trained_by=args.trained_by or os.environ.get("USER") or "cli",
        data_ref=data_ref,
        progress=_progress(args),
    )
    if args.json:
        _print_json(train_json(bundle))
        return 0
    meta = bundle["metadata"]
    sil = "n/a" if meta["silhouette"] is None else f"{meta['silhouette']:.3f}"
    print(f"Trained model {bundle['version']} on {meta['source']}")
    print(
        f"  {meta['orders']:,} orders from {meta['customers']:,} customers "
        f"({meta['one_time_share']:.1%} bought once); snapshot date {meta['snapshot_date']} "
        f"(latest purchase {meta['latest_purchase']})"
    )
    print(f"  excluded: {describe_exclusions(meta['excluded'])}")
    print(f"  K = {meta['k']}, silhouette {sil} on a {meta['silhouette_sample']:,}-customer sample")
    print()
    print(_table(SEGMENT_HEADERS, _segment_rows(bundle["segments"]), "lrrrrr"))
    rb = bundle["rule_based"]
    print()
    print("Rule-based quantile segments, for comparison:")
    print(
        _table(
            ("Segment", "Customers", "of them one-time buyers"),
            [[s["name"], f"{s['customers']:,}", f"{s['one_time_buyers']:,}"] for s in rb["segments"]],
            "lrr",
        )
    )
    ch = rb["champions"]
    print()
    print(
        f"Champions: the quantile rules find {ch['rule_based']:,} "
        f"({ch['rule_based_one_time_buyers']:,} of them one-time buyers); "
        f"KMeans finds {ch['kmeans']:,} ({ch['kmeans_one_time_buyers']:,} one-time)."
    )
    return 0


def _print_answer(ans) -> None:
    print(f"{ans.segment}: {ans.description}")
    print(f"  recency {ans.recency:,.0f} days, {ans.frequency:,.0f} orders, spend {_money(ans.monetary)}")
    if ans.note:
        print(f"  Note: {ans.note}")
    print("  Recommended actions:")
    for a in ans.actions:
        print(f"  - {a}")


def cmd_predict(args: argparse.Namespace) -> int:
    from .inputs import parse_rfm

    rfm = parse_rfm(args.values)
    service = _service(args)
    ans = service.predict(rfm)
    if args.json:
        _print_json({**ans.as_json(), "model_version": service.version})
    else:
        _print_answer(ans)
    return 0


def cmd_customer(args: argparse.Namespace) -> int:
    ans = _service(args).customer(args.customer_id)
    if args.json:
        _print_json(ans.as_json())
    else:
        print(f"Customer {ans.customer_id} (model {ans.model_version})")
        _print_answer(ans)
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    service = _service(args)
    segments = service.segments()
    if args.json:
        keys = SEGMENT_KEYS + ("description", "actions")
        _print_json({"model_version": service.version, "segments": [{k: s[k] for k in keys} for s in segments]})
        return 0
    meta = service.metadata
    print(f"Model {service.version}: {meta['customers']:,} customers, trained {meta['trained_at']}")
    print()
    print(_table(SEGMENT_HEADERS, _segment_rows(segments), "lrrrrr"))
    for s in segments:
        print()
        print(f"{s['name']}: {s['description']}")
        for a in s["actions"]:
            print(f"  - {a}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    names, n = _service(args).export(args.segment, args.out)
    print(f"Wrote {n:,} customers of {', '.join(names)} to {args.out}")
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from .sample import write_sample

    progress = None
    if not args.quiet:
        def progress(done: int, total: int) -> None:
            print(f"\r  {done:,} / {total:,} orders", end="", file=sys.stderr, flush=True)
    write_sample(args.out, orders=args.orders, seed=args.seed, progress=progress)
    if progress:
        print(file=sys.stderr)
    print(f"Wrote {args.orders:,} orders (seed {args.seed}) in the Olist layout to {args.out}")
    return 0


def model_json(store) -> dict[str, Any]:
    current = store.current_version()
    return {
        "current": current,
        "versions": [
            {"version": v, "current": v == current,
             **{k: meta.get(k) for k in ("trained_at", "trained_by", "source", "customers", "k", "silhouette")}}
            for v in store.versions()
            for meta in [store.info(v).metadata]  # one manifest read per version
        ],
    }


def cmd_model(args: argparse.Namespace) -> int:
    store = _store(args)
    info = model_json(store)
    if args.json:
        _print_json(info)
        return 0
    if not info["versions"]:
        raise SegmentationError("No model yet: run 'segment train' first.")
    rows = [
        [("* " if v["current"] else "  ") + v["version"], v["trained_at"], v["trained_by"], v["source"],
         f"{v['customers']:,}", v["k"], "-" if v["silhouette"] is None else f"{v['silhouette']:.3f}"]
        for v in reversed(info["versions"])
    ]
    print(_table(("Version", "Trained at", "By", "Data", "Customers", "K", "Silhouette"), rows, "lllllrr"))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    old, new = _store(args).rollback()
    print(f"Rolled back: now serving {new} (was {old}).")
    return 0


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

    p = sub.add_parser("train", help="train a model and print the segment table")
    p.add_argument("--data", help="Olist folder, or a CSV/Parquet transactions file (default: the built-in sample)")
    p.add_argument("--k", type=k_value, default=11, help="number of segments (default 11)")
    p.add_argument("--as-of", type=parse_date, help="snapshot date YYYY-MM-DD (default: day after the latest purchase)")
    add_column_options(p)
    p.add_argument("--trained-by", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="the segment of an R F M profile, e.g. predict 30 2 150")
    p.add_argument("values", nargs="*", metavar="R F M", help="recency (days), frequency (orders), monetary (spend)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("customer", help="the segment of one customer of the training data")
    p.add_argument("customer_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_customer)

    p = sub.add_parser("segments", help="every segment with its size and recommended actions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_segments)

    p = sub.add_parser("export", help="write one segment's customers to a CSV file")
    p.add_argument("segment", help="segment name, e.g. \"At Risk\" (a base name exports all its clusters)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample-data", help="write synthetic order history in the Olist layout")
    p.add_argument("--orders", type=positive_int, default=100_000)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=seed_value, default=42)
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("model", help="the saved model versions; * marks the served one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model)

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
        print(f"segment: unexpected error: {type(exc).__name__}: {exc} (set SEGMENT_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
