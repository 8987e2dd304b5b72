"""The marketing playbook: a description and 2–4 actions per segment, and the at-risk list.

It lives in ``playbook.toml`` next to this module; ``SEGMENT_PLAYBOOK`` points at another copy.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import PlaybookError
from .naming import VOCABULARY

DEFAULT_PATH = Path(__file__).with_name("playbook.toml")


@dataclass(frozen=True)
class Play:
    description: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Playbook:
    plays: dict[str, Play]
    at_risk: tuple[str, ...]
    path: Path

    def play(self, base_name: str) -> Play:
        return self.plays[base_name]

    def is_at_risk(self, base_name: str) -> bool:
        return base_name in self.at_risk


def parse(text: str, path: Path) -> Playbook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlaybookError(f"{path}: not valid TOML ({exc})") from None
    segments = data.get("segments")
    if not isinstance(segments, dict):
        raise PlaybookError(f"{path}: needs a [segments.\"<name>\"] table for each segment")
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
        raise PlaybookError(
            f"{path}: unknown segment {unknown[0]!r}; the names are: {', '.join(VOCABULARY)}"
        )
    at_risk = data.get("at_risk", ["At Risk", "Can't Lose Them", "About To Sleep"])
    if not isinstance(at_risk, list) or any(a not in VOCABULARY for a in at_risk):
        raise PlaybookError(f"{path}: at_risk must list segment names from: {', '.join(VOCABULARY)}")
    return Playbook(plays, tuple(at_risk), path)


@lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int) -> Playbook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read the playbook ({exc.strerror})") from None
    return parse(text, path)


def load(path: str | os.PathLike | None = None) -> Playbook:
    """The playbook at ``path``, ``$SEGMENT_PLAYBOOK`` or the packaged default.

    Re-read whenever the file changes, so marketing edits show up without a restart.
    """
    p = Path(path or os.environ.get("SEGMENT_PLAYBOOK") or DEFAULT_PATH).expanduser()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise PlaybookError(f"{p}: playbook file not found") from None
    return _load_cached(p, mtime)
