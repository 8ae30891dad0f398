"""The coding core's fast paths build exactly what the generic ones build.

``coded_line`` & co. must give the same object as ``trusted`` (same field values, same
``__dict__`` order -- which is the order of the serialised JSON -- and the same fields-set);
``hour_starts`` must split time like the straightforward hour-block algorithm.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from coding_core.model import (
    CodedLine,
    Coding,
    CodingResult,
    CodingWarning,
    Exclusion,
    Setting,
    coded_line,
    coding_result,
    coding_warning,
    exclusion,
    trusted,
)
from coding_core.timing import hour_blocks, hour_starts, union, whole_minutes


def _same(a, b) -> None:
    assert type(a) is type(b)
    assert list(a.__dict__.items()) == list(b.__dict__.items())
    assert a.model_fields_set == b.model_fields_set
    assert a.model_dump_json() == b.model_dump_json()
    assert a == b


def test_fast_builders_match_trusted() -> None:
    codings = (Coding(system="s", code="c"),)
    _same(
        coded_line("96365", "CPT", 2, ("59",), date(2026, 3, 2), ("a", "b"), "r", "why", 75, "device:x", "drug", codings, "123", "add-on"),
        trusted(CodedLine, code="96365", system="CPT", units=2, modifiers=("59",), service_date=date(2026, 3, 2),
                administration_ids=("a", "b"), rule="r", reason="why", minutes=75, access_site="device:x",
                drug_name="drug", drug_codings=codings, ndc="123", role="add-on", unit=None, ndc_quantity=None, ndc_unit=None),
    )
    _same(coding_warning("c", "m", ("a",)), trusted(CodingWarning, code="c", message="m", administration_ids=("a",)))
    _same(exclusion("a", "why"), trusted(Exclusion, administration_id="a", reason="why"))
    line = coded_line("J9312", "HCPCS", 1, (), date(2026, 3, 2), ("a",), "r", "why", None, None, "drug", (), None, "drug")
    _same(
        coding_result("enc", Setting.FACILITY, (line,), (), (), "v1"),
        trusted(CodingResult, encounter_id="enc", setting=Setting.FACILITY, lines=(line,), warnings=(), exclusions=(), formulary_version="v1"),
    )


def _reference_hour_blocks(intervals):
    """The plain algorithm: walk the running time minute-chunk by minute-chunk."""
    blocks, used, block_start = [], 0, None
    for s, e in union(intervals):
        cursor, remaining = s, whole_minutes(s, e)
        while remaining > 0:
            if block_start is None:
                block_start = cursor
            take = min(60 - used, remaining)
            used += take
            remaining -= take
            cursor = cursor + timedelta(minutes=take)
            if used == 60:
                blocks.append((block_start, 60))
                used, block_start = 0, None
    if used and block_start is not None:
        blocks.append((block_start, used))
    return blocks


def test_hour_starts_match_the_reference_split() -> None:
    t = datetime(2026, 3, 8, 5, 17, 30, tzinfo=timezone.utc)
    cases = [
        [],
        [(t, t)],
        [(t, t + timedelta(minutes=59))],
        [(t, t + timedelta(minutes=181, seconds=20))],
        [(t, t + timedelta(minutes=50)), (t + timedelta(minutes=60), t + timedelta(minutes=160))],
        [(t + timedelta(minutes=60), t + timedelta(minutes=160)), (t, t + timedelta(minutes=90))],
    ]
    for intervals in cases:
        expected = _reference_hour_blocks(intervals)
        assert hour_starts(intervals) == expected
        assert [(b.index, b.start, b.minutes) for b in hour_blocks(intervals)] == [(i, *b) for i, b in enumerate(expected)]


def test_shared_fields_set_is_never_changed_through_a_copy() -> None:
    """The fast builders give every object of a kind the same fields-set (the models are
    frozen); pydantic's copies must still get their own, so updating one changes no other."""
    import pickle

    codings = (Coding(system="s", code="c"),)
    a = coded_line("96365", "CPT", 1, (), date(2026, 3, 2), ("a",), "r", "why", 75, None, "drug", codings, None, "initial")
    b = coded_line("96366", "CPT", 1, (), date(2026, 3, 2), ("a",), "r", "why", 75, None, "drug", codings, None, "add-on")
    every_field = set(CodedLine.model_fields)
    c = a.model_copy(update={"units": 2})
    assert c.units == 2 and c.model_fields_set == every_field
    assert c.model_fields_set is not a.model_fields_set
    assert a.model_fields_set == b.model_fields_set == every_field
    w = coding_warning("c", "m", ("a",))
    assert w.model_copy(update={"message": "x"}).model_fields_set == {"code", "message", "administration_ids"}
    assert pickle.loads(pickle.dumps(a)) == a
    assert a.model_fields_set == every_field and w.model_fields_set == {"code", "message", "administration_ids"}


def test_local_parts_text_is_the_same_with_a_day_text_cache() -> None:
    from zoneinfo import ZoneInfo

    from coding_core.timing import local_parts

    tz = ZoneInfo("America/New_York")
    cache: dict = {}
    t = datetime(2026, 3, 7, 20, tzinfo=timezone.utc)  # across the spring-forward night
    instants = [t + timedelta(minutes=17 * i) for i in range(200)] + [datetime(999, 5, 1, 12, tzinfo=timezone.utc)]
    for instant in instants + instants:
        assert local_parts(instant, tz, cache) == local_parts(instant, tz)
