"""The ``segment`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segment_cli import settings as settings_mod
from segment_cli.args import Command, FriendlyParser, k_value, parse_date, positive_int, sample_value, seed_value
from segment_cli.commands import (
    cmd_at_risk,
    cmd_backtest,
    cmd_customer,
    cmd_export,
    cmd_model,
    cmd_predict,
    cmd_rekey,
    cmd_report,
    cmd_rollback,
    cmd_sample_data,
    cmd_segments,
    cmd_serve,
    cmd_train,
    cmd_validate,
)
from segmentation import runtime
from segmentation.data.kinds import LAYOUTS
from segmentation.data.spec import add_options
from segmentation.errors import SegmentationError
from segmentation.serving.atomic import storage_error

# -- parser ----------------------------------------------------------------------------------


def build_parser(extra: Sequence[Command] = ()) -> argparse.ArgumentParser:
    parser = FriendlyParser(
        prog="segment",
        description="Customer segments from order history: RFM, KMeans and a marketing playbook.",
    )
    parser.add_argument(
        "--artifacts",
        default=None,
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
        add_options(p)
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

    p = sub.add_parser("sample-data", help="write synthetic order history (the Olist layout, or one Parquet file)")
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
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="olist",
        help="olist (the six CSV files, the default) or transactions (one Parquet file of the delivered "
        "orders, streamed: for 100M orders and more)",
    )
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("model", help="the saved model versions and the served model's terms; * marks the served one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("rekey", help="rotate the model key: re-sign every version with a new key")
    p.set_defaults(func=cmd_rekey)

    p = sub.add_parser("rollback", help="serve the previous model version")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("serve", help="serve a kept model version by name, e.g. forward again after a rollback")
    p.add_argument("version", help="e.g. v0003 (segment model lists them)")
    p.set_defaults(func=cmd_serve)

    for command in extra:
        p = sub.add_parser(command.name, help=command.help)
        command.configure(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None, extra: Sequence[Command] = ()) -> int:
    parser = build_parser(extra)
    debug = False
    try:
        args = parser.parse_args(argv)
        args.settings = settings_mod.load(require_slack=False, dotenv=False, artifacts=args.artifacts, with_key=False)
        args.artifacts = str(args.settings.artifacts)
        debug = args.settings.debug
        runtime.configure(args.settings.runtime)
        return args.func(args)
    except SegmentationError as exc:
        print(f"segment: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("segment: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a full or read-only disk anywhere a command writes: one plain line
        plain = storage_error(exc, exc.filename or "the output folder")
        if plain is None or debug:
            return _unexpected(exc, debug)
        print(f"segment: {plain}", file=sys.stderr)
        return plain.exit_code
    except Exception as exc:  # never a traceback at a user; SEGMENT_DEBUG=1 shows it
        return _unexpected(exc, debug)


def _unexpected(exc: Exception, debug: bool) -> int:
    if debug:
        raise exc
    print(f"segment: unexpected error: {type(exc).__name__}: {exc} (set SEGMENT_DEBUG=1 for details)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
