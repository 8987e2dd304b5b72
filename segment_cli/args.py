"""Argument types and the parser of the segment command: a usage mistake is one line."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from segmentation.errors import InputError
from segmentation.model.estimator import MAX_K, MAX_SEED, MIN_K


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


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date; use YYYY-MM-DD, e.g. 2018-09-01") from None


def k_value(text: str) -> int:
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
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {value}")
    return value


def sample_value(text: str) -> int | None:
    """--sample: a number of customers (at least 1,000) or ``all``."""
    if text.strip().lower() == "all":
        return None
    value = _whole_number(text, f"must be a number of customers or 'all', got '{text[:20]}'")
    if value < 1_000:
        raise argparse.ArgumentTypeError(f"must be at least 1000 (or 'all'), got {value}")
    return value


def _whole_number(text: str, problem: str) -> int:
    """A whole number, thousands separators allowed (1,000 or 1_000); else ``problem``."""
    try:
        return int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(problem) from None


def positive_int(text: str) -> int:
    value = _whole_number(text, f"'{text}' is not a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
