"""The marketing playbook: a description and 2–4 actions per segment, and the at-risk rule.

It lives in ``playbook.toml`` next to this module; ``SEGMENT_PLAYBOOK`` points at another copy.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from segmentation import runtime
from segmentation.errors import PlaybookError
from segmentation.model.atrisk import ONE_TIME_SPEND, AtRiskRule
from segmentation.model.definitions import VOCABULARY

DEFAULT_PATH = Path(__file__).with_name("playbook.toml")


@dataclass(frozen=True)
class Play:
    description: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Playbook:
    plays: dict[str, Play]
    at_risk: AtRiskRule
    path: Path

    def play(self, base_name: str) -> Play:
        return self.plays[base_name]


def parse(text: str, path: Path) -> Playbook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlaybookError(f"{path}: not valid TOML ({exc})") from None
    segments = data.get("segments")
    if not isinstance(segments, dict):
        raise PlaybookError(f'{path}: needs a [segments."<name>"] table for each segment')
    plays: dict[str, Play] = {}
    for name in VOCABULARY:
        entry = segments.get(name)
        if not isinstance(entry, dict):
            raise PlaybookError(f'{path}: missing [segments."{name}"]')
        desc = entry.get("description")
        actions = entry.get("actions")
        if not isinstance(desc, str) or not desc.strip():
            raise PlaybookError(f'{path}: segments."{name}" needs a one-line description')
        if (
            not isinstance(actions, list)
            or not 2 <= len(actions) <= 4
            or not all(isinstance(a, str) and a.strip() for a in actions)
        ):
            raise PlaybookError(f'{path}: segments."{name}" needs 2 to 4 actions (non-empty strings)')
        plays[name] = Play(desc.strip(), tuple(a.strip() for a in actions))
    unknown = sorted(set(segments) - set(VOCABULARY))
    if unknown:
        raise PlaybookError(f"{path}: unknown segment {unknown[0]!r}; the names are: {', '.join(VOCABULARY)}")
    return Playbook(plays, _at_risk_rule(data.get("at_risk", {}), path), path)


def _at_risk_rule(table: object, path: Path) -> AtRiskRule:
    if isinstance(table, list):
        raise PlaybookError(
            f"{path}: at_risk is now a rule, not a list of segment names: replace it with an "
            "[at_risk] table (see the packaged playbook.toml)"
        )
    if not isinstance(table, dict):
        raise PlaybookError(f"{path}: [at_risk] must be a table")
    if "own_gap_multiple" in table:
        raise PlaybookError(
            f"{path}: at_risk.own_gap_multiple is gone: the rule now follows each customer's chance to buy "
            "again; use fall (e.g. 0.67: flagged once the odds of buying again have fallen by a third) instead"
        )
    unknown = sorted(set(table) - {"repeat_buyers", "fall", "one_time_spend"})
    if unknown:
        raise PlaybookError(
            f"{path}: unknown at_risk setting {unknown[0]!r}; the settings are repeat_buyers, fall and one_time_spend"
        )
    default = AtRiskRule()
    repeat = table.get("repeat_buyers", default.repeat_buyers)
    fall = table.get("fall", default.fall)
    spend = table.get("one_time_spend", default.one_time_spend)
    if not isinstance(repeat, bool):
        raise PlaybookError(f"{path}: at_risk.repeat_buyers must be true or false")
    if isinstance(fall, bool) or not isinstance(fall, (int, float)) or not 0.05 <= fall <= 0.95:
        raise PlaybookError(f"{path}: at_risk.fall must be a share from 0.05 to 0.95 (0.5: the odds have halved)")
    if spend not in ONE_TIME_SPEND:
        raise PlaybookError(f'{path}: at_risk.one_time_spend must be "high", "mid" or "none"')
    return AtRiskRule(repeat, spend, float(fall))


@lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int) -> Playbook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read the playbook ({exc.strerror})") from None
    return parse(text, path)


def load(path: str | os.PathLike | None = None) -> Playbook:
    """The playbook at ``path``, the runtime's (``SEGMENT_PLAYBOOK``) or the packaged default.

    Re-read whenever the file changes, so marketing edits show up without a restart.
    """
    p = Path(path or runtime.current().playbook or DEFAULT_PATH).expanduser()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise PlaybookError(f"{p}: playbook file not found") from None
    return _load_cached(p, mtime)
