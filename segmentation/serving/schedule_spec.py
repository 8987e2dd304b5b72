"""Digest schedules as people type them: ``daily 09:00``, ``weekly mon 09:00`` or a cron line.

Cron expressions use the standard convention (day of week 0 or 7 = Sunday); APScheduler's own
numbering starts at Monday, so numeric days are translated to names before it sees them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from segmentation.errors import InputError
from segmentation.serving.inputs import shown

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ALIASES = {d: d for d in DAYS} | {
    "sunday": "sun",
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
}
EXAMPLE = '/segment digest subscribe daily 09:00  ·  weekly mon 09:00  ·  "0 9 * * 1-5" Europe/Berlin'


@dataclass(frozen=True)
class Schedule:
    cron: str  # five fields, standard cron convention
    timezone: str
    text: str  # how to say it back

    def trigger(self) -> CronTrigger:
        return make_trigger(self.cron, self.timezone)


def _time(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?", text.strip().lower())
    if not m:
        raise InputError(f"'{shown(text)}' is not a time; use HH:MM, e.g. 09:00. Example: {EXAMPLE}")
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3):
        if not 1 <= hour <= 12:
            raise InputError(f"'{shown(text)}' is not a time. Example: {EXAMPLE}")
        hour = hour % 12 + (12 if m.group(3) == "pm" else 0)
    if hour > 23 or minute > 59:
        raise InputError(f"'{shown(text)}' is not a time of day (00:00 to 23:59). Example: {EXAMPLE}")
    return hour, minute


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"Unknown time zone '{shown(name)}'; use a name like Europe/Berlin or America/Sao_Paulo."
        ) from None
    return name


def _cron_dow_to_names(field: str) -> str:
    """Standard cron day-of-week (0/7 = Sunday, ranges, lists, steps) to APScheduler names."""
    if field == "*" or re.fullmatch(r"[a-z,\-*/]+", field):
        return field
    days: set[int] = set()
    for part in field.split(","):
        m = re.fullmatch(r"(\*|\d|[a-z]{3})(?:-(\d|[a-z]{3}))?(?:/(\d+))?", part)
        if not m:
            raise InputError(f"'{shown(field)}' is not a day-of-week field. Example: {EXAMPLE}")

        def num(t: str) -> int:
            return DAYS.index(t) if t in DAYS else int(t)

        start = 0 if m.group(1) == "*" else num(m.group(1))
        end = 6 if m.group(1) == "*" else (num(m.group(2)) if m.group(2) else start)
        step = int(m.group(3) or 1)
        if not (0 <= start <= 7 and 0 <= end <= 7) or step < 1:
            raise InputError(f"'{shown(field)}': days of the week are 0-7 (0 and 7 are Sunday). Example: {EXAMPLE}")
        if m.group(3) and not m.group(2) and m.group(1) != "*":
            end = 6
        days.update(d % 7 for d in range(start, end + 1, step))
    return ",".join(DAYS[d] for d in sorted(days))


def make_trigger(cron: str, timezone: str) -> CronTrigger:
    fields = cron.split()
    if len(fields) != 5:
        raise InputError(f"A cron expression has five fields (minute hour day month weekday); got '{shown(cron)}'.")
    minute, hour, day, month, dow = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_cron_dow_to_names(dow.lower()),
            timezone=ZoneInfo(timezone),
        )
    except ValueError as exc:
        raise InputError(f"'{shown(cron)}' is not a valid cron expression ({exc}). Example: {EXAMPLE}") from None


MIN_INTERVAL = dt.timedelta(hours=1)  # a digest scores every customer: not every minute


def parse(text: str, default_timezone: str = "UTC") -> Schedule:
    """``daily 09:00 [TZ]``, ``weekly mon 09:00 [TZ]`` or ``<five cron fields> [TZ]``."""
    words = text.replace('"', " ").replace("'", " ").split()
    if not words:
        raise InputError(f"When should I post? Example: {EXAMPLE}")
    tz = default_timezone
    if len(words) > 1 and (re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+\-]+)+", words[-1]) or words[-1].upper() == "UTC"):
        tz = _zone("UTC" if words[-1].upper() == "UTC" else words.pop())
        if words[-1].upper() == "UTC":
            words.pop()
    kind = words[0].lower()
    if kind == "daily" and len(words) == 2:
        h, m = _time(words[1])
        schedule = Schedule(f"{m} {h} * * *", tz, f"daily at {h:02d}:{m:02d} {tz}")
    elif kind == "weekly" and len(words) == 3:
        day = _DAY_ALIASES.get(words[1].lower())
        if day is None:
            raise InputError(f"'{shown(words[1])}' is not a day; use mon, tue, … sun. Example: {EXAMPLE}")
        h, m = _time(words[2])
        schedule = Schedule(f"{m} {h} * * {day}", tz, f"every {day.capitalize()} at {h:02d}:{m:02d} {tz}")
    elif len(words) == 5:
        schedule = Schedule(" ".join(words), tz, f"cron `{' '.join(words)}` {tz}")
    else:
        raise InputError(f"I can't read the schedule '{shown(text)}'. Example: {EXAMPLE}")
    trigger = schedule.trigger()  # validate now, not at the first run
    times = [trigger.get_next_fire_time(None, dt.datetime.now(dt.UTC))]
    for _ in range(24):  # a day's worth of runs is enough to see the shortest gap of any cron line
        if times[-1] is None:
            break
        times.append(trigger.get_next_fire_time(times[-1], times[-1] + dt.timedelta(seconds=1)))
    gaps = [b - a for a, b in zip(times, times[1:]) if a is not None and b is not None]
    if gaps and min(gaps) < MIN_INTERVAL:
        minutes = int(min(gaps).total_seconds() // 60)
        raise InputError(
            f"Digests go out at most once an hour; '{shown(text)}' would post {minutes} "
            f"minute{'' if minutes == 1 else 's'} apart. Example: {EXAMPLE}"
        )
    return schedule


def when_text(t: dt.datetime | None, tz: str) -> str:
    """A next run time as people read it in the schedule's own time zone ("paused" without one)."""
    if t is None:
        return "paused"
    return t.astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M ") + tz
