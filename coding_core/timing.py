"""Time arithmetic for time-based codes.

All durations are whole minutes on absolute (UTC) time, so daylight-saving changes never
add or remove minutes.  Dates of service are local dates in the site's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]

ADDON_HOUR_MIN_MINUTES = 31  # "> 30 minutes beyond each full hour"


def to_utc(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc)


def whole_minutes(start: datetime, end: datetime) -> int:
    """Whole minutes between two aware instants (seconds truncated).

    Python subtracts two datetimes that share a tzinfo object as wall-clock times, which
    is wrong across a DST change; instants in the engine are UTC (see ``to_utc``), and
    anything else is converted here.
    """
    if start.tzinfo is not timezone.utc:
        start = start.astimezone(timezone.utc)
    if end.tzinfo is not timezone.utc:
        end = end.astimezone(timezone.utc)
    return (end - start) // _MINUTE


_MINUTE = timedelta(minutes=1)


def additional_hour_units(total_minutes: int) -> int:
    """Units of an "each additional hour" code for an infusion of ``total_minutes``.

    With ``d`` minutes beyond the first hour: ``d // 60 + (1 if d % 60 > 30 else 0)``.
    """
    d = total_minutes - 60
    if d <= 0:
        return 0
    return d // 60 + (1 if d % 60 > 30 else 0)


def union(intervals: list[Interval]) -> list[Interval]:
    """Merge overlapping/adjacent intervals; result sorted and disjoint."""
    if len(intervals) < 2:  # nothing to merge (the usual single bag or push)
        return list(intervals)
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract(intervals: list[Interval], remove: list[Interval]) -> list[Interval]:
    """``intervals`` minus ``remove`` (both lists of intervals)."""
    result = union(intervals)
    for rs, re_ in union(remove):
        nxt: list[Interval] = []
        for s, e in result:
            if re_ <= s or rs >= e:
                nxt.append((s, e))
                continue
            if s < rs:
                nxt.append((s, rs))
            if re_ < e:
                nxt.append((re_, e))
        result = nxt
    return result


def overlap_minutes(a: list[Interval], b: list[Interval]) -> int:
    total = 0
    merged_b = union(b)
    for s1, e1 in union(a):
        for s2, e2 in merged_b:
            s, e = max(s1, s2), min(e1, e2)
            if e > s:
                total += whole_minutes(s, e)
    return total


def total_minutes(intervals: list[Interval]) -> int:
    if not intervals:
        return 0
    if len(intervals) == 1:
        s, e = intervals[0]
        return whole_minutes(s, e)
    return sum([whole_minutes(s, e) for s, e in union(intervals)])


@dataclass(frozen=True)
class HourBlock:
    """One hour of an infusion's own running time (the last block may be partial)."""

    index: int  # 0 = the first hour
    start: datetime  # instant the block began
    minutes: int


def hour_blocks(intervals: list[Interval]) -> list[HourBlock]:
    """Split an infusion's running time (possibly several bags) into consecutive hours.

    Time is counted only while the infusate runs, so two bags of the same drug with a
    gap between them add up, and each hour block starts at the instant its first minute ran.
    """
    return [HourBlock(i, start, minutes) for i, (start, minutes) in enumerate(hour_starts(intervals))]


_MINUTES = tuple(timedelta(minutes=m) for m in range(61))


def hour_starts(intervals: list[Interval]) -> list[tuple[datetime, int]]:
    """``hour_blocks`` as (start, minutes) pairs, the block index being the list index."""
    blocks: list[tuple[datetime, int]] = []
    used_in_block = 0
    block_start: datetime | None = None
    for s, e in (intervals if len(intervals) == 1 else union(intervals)):
        cursor = s
        remaining = whole_minutes(s, e)
        while remaining > 0:
            if block_start is None:
                block_start = cursor
            take = 60 - used_in_block
            if remaining < take:
                take = remaining
            used_in_block += take
            remaining -= take
            cursor = cursor + _MINUTES[take]
            if used_in_block == 60:
                blocks.append((block_start, 60))
                used_in_block, block_start = 0, None
    if used_in_block and block_start is not None:
        blocks.append((block_start, used_in_block))
    return blocks


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def fmt_local(instant: datetime, tz: ZoneInfo) -> str:
    return local_parts(instant, tz)[1]


_HH_MM = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))


def local_parts(instant: datetime, tz: ZoneInfo, day_texts: dict[date, str] | None = None) -> tuple[date, str]:
    """(local date, 'YYYY-MM-DD HH:MM' local text) with one zone conversion.

    ``day_texts``: the caller's own cache of 'YYYY-MM-DD ' per local date (the engine keeps one
    per encounter); the text is the same with or without it."""
    local = instant.astimezone(tz)
    day = local.date()
    if local.year < 1000:  # keep strftime's rendering of such years
        return day, local.strftime("%Y-%m-%d %H:%M")
    if day_texts is None:
        return day, f"{day.isoformat()} {_HH_MM[local.hour * 60 + local.minute]}"
    prefix = day_texts.get(day)
    if prefix is None:
        prefix = day_texts[day] = day.isoformat() + " "
    return day, prefix + _HH_MM[local.hour * 60 + local.minute]
