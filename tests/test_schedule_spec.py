from __future__ import annotations

import datetime as dt

import pytest

from segmentation.errors import InputError
from segmentation.serving.schedule_spec import parse

UTC = dt.UTC
START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday


def next_fire(text, after=START):
    return parse(text).trigger().get_next_fire_time(None, after)


@pytest.mark.parametrize(
    "text, cron, tz, said",
    [
        ("daily 09:00", "0 9 * * *", "UTC", "daily at 09:00 UTC"),
        ("daily 9pm", "0 21 * * *", "UTC", "daily at 21:00 UTC"),
        ("weekly mon 09:00", "0 9 * * mon", "UTC", "every Mon at 09:00 UTC"),
        (
            "weekly Friday 17:30 America/Sao_Paulo",
            "30 17 * * fri",
            "America/Sao_Paulo",
            "every Fri at 17:30 America/Sao_Paulo",
        ),
        ('"0 9 * * 1-5" Europe/Berlin', "0 9 * * 1-5", "Europe/Berlin", "cron `0 9 * * 1-5` Europe/Berlin"),
        ("0 */2 * * *", "0 */2 * * *", "UTC", "cron `0 */2 * * *` UTC"),
    ],
)
def test_schedules(text, cron, tz, said):
    s = parse(text)
    assert (s.cron, s.timezone, s.text) == (cron, tz, said)


def test_cron_days_use_the_standard_numbering():
    assert next_fire("0 9 * * 0").weekday() == 6  # 0 is Sunday in cron (APScheduler counts from Monday)
    assert next_fire("0 9 * * 7").weekday() == 6
    assert next_fire("0 9 * * 1").weekday() == 0
    fires, t = [], START
    for _ in range(7):
        t = next_fire("0 9 * * 1-5", t + dt.timedelta(minutes=1))
        fires.append(t.weekday())
    assert sorted(set(fires)) == [0, 1, 2, 3, 4]


def test_time_zone_is_honoured_and_defaulted():
    t = next_fire("daily 09:00 Europe/Berlin")
    assert t.astimezone(UTC).hour == 8  # 09:00 in Berlin in winter
    assert parse("daily 09:00", default_timezone="Asia/Tokyo").timezone == "Asia/Tokyo"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "When should I post?"),
        ("* * * * *", r"at most once an hour; '\* \* \* \* \*' would post 1 minute apart"),
        ("0,30 9 * * *", "would post 30 minutes apart"),
        ("hourly", "I can't read the schedule"),
        ("daily 24:00", "not a time of day"),
        ("daily noon", "is not a time"),
        ("weekly someday 09:00", "is not a day"),
        ("0 9 * * 9", "days of the week are 0-7"),
        ("61 9 * * *", "not a valid cron expression"),
        ("daily 09:00 Mars/Base", "Unknown time zone"),
    ],
)
def test_bad_schedules(text, message):
    with pytest.raises(InputError, match=message):
        parse(text)
