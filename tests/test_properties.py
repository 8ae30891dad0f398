"""Properties that hold for any encounter, on generated administrations."""

from __future__ import annotations

import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coding_core.engine import code_encounter
from coding_core.model import AdminStatus, EncounterClass, EncounterInfo, Method, Route, Setting
from coding_core.profile import Profile
from coding_core.rules import ADDON_PRIMARIES
from tests.builders import DRUGS, FORMULARY, INITIAL_CODES, adm

# Start times around the 2026 spring-forward and fall-back transitions in New York.
WINDOWS = [datetime(2026, 3, 7, 20, tzinfo=timezone.utc), datetime(2026, 10, 31, 20, tzinfo=timezone.utc)]
IV_DRUGS = [c for c, d in DRUGS.items() if d[1] in ("chemo", "chemo-hormonal", "therapeutic", "hydration")]


@st.composite
def administration(draw, index: int):
    base = draw(st.sampled_from(WINDOWS))
    start = base + timedelta(minutes=draw(st.integers(0, 48 * 60)))
    has_end = draw(st.booleans()) or draw(st.booleans())
    end = start + timedelta(minutes=draw(st.integers(0, 10 * 60))) if has_end else None
    return adm(
        draw(st.sampled_from(IV_DRUGS)),
        start,
        end,
        id=f"ma-{index:03d}",
        route=draw(st.sampled_from([Route.IV, Route.IV, Route.IV, Route.SC, Route.IM, Route.UNKNOWN])),
        method=draw(st.sampled_from([Method.UNKNOWN, Method.UNKNOWN, Method.PUSH, Method.INFUSION])),
        site=draw(st.sampled_from(["port-1", "piv-L", None])),
        dose=(draw(st.integers(1, 900)), "mg"),
        volume=draw(st.sampled_from([None, 250, 1000])),
        rate=draw(st.sampled_from([None, 20, 125, 500])),
        status=draw(st.sampled_from([AdminStatus.COMPLETED] * 8 + [AdminStatus.ENTERED_IN_ERROR, AdminStatus.NOT_DONE])),
    )


@st.composite
def encounter_events(draw):
    n = draw(st.integers(1, 12))
    return [draw(administration(i)) for i in range(n)]


def _code(events, setting=Setting.FACILITY, tz="America/New_York"):
    enc = EncounterInfo(id="enc-1", encounter_class=EncounterClass.OBSERVATION)
    return code_encounter(enc, events, FORMULARY, Profile(setting=setting, timezone=tz))


PER_DATE_OF_SERVICE = {"96368"}  # once per date of service (CPT): how many depends on where midnight falls

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(encounter_events())
def test_never_two_initial_services_on_one_access_site(events) -> None:
    result = _code(events)
    initials = Counter(ln.access_site for ln in result.lines if ln.code in INITIAL_CODES)
    assert all(n == 1 for n in initials.values()), initials
    # and only the first (primary) access goes without the distinct-service modifier
    assert sum(1 for ln in result.lines if ln.code in INITIAL_CODES and not ln.modifiers) <= 1


@SETTINGS
@given(encounter_events(), st.sampled_from(list(Setting)))
def test_no_add_on_without_its_primary(events, setting) -> None:
    result = _code(events, setting)
    codes = {ln.code for ln in result.lines}
    for ln in result.lines:
        if ln.code in ADDON_PRIMARIES:
            assert ADDON_PRIMARIES[ln.code] & codes, (ln.code, codes)


@SETTINGS
@given(encounter_events(), st.randoms(use_true_random=False), st.sampled_from(list(Setting)))
def test_result_does_not_depend_on_input_order(events, rnd, setting) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert _code(events, setting) == _code(shuffled, setting)


@SETTINGS
@given(encounter_events())
def test_units_do_not_depend_on_the_sites_time_zone(events) -> None:
    """Minutes are absolute: coding in DST-observing New York or in UTC gives the same
    administration codes and units (only the dates lines fall on may differ; drug units are
    rounded per date of service, and 96368 is reported once per date of service, so those
    legitimately can)."""

    def totals(result):
        c: Counter = Counter()
        for ln in result.lines:
            if ln.system == "CPT" and ln.code not in PER_DATE_OF_SERVICE:
                c[(ln.code, ln.modifiers)] += ln.units
        return c

    assert totals(_code(events, tz="America/New_York")) == totals(_code(events, tz="UTC"))


@SETTINGS
@given(encounter_events())
def test_every_line_is_traceable_to_the_input(events) -> None:
    result = _code(events)
    ids = {e.id for e in events}
    excluded = {x.administration_id for x in result.exclusions}
    for ln in result.lines:
        assert ln.units >= 1 and ln.reason and set(ln.administration_ids) <= ids
    # nothing silently dropped: every administration is on a line or listed as excluded
    used = {i for ln in result.lines for i in ln.administration_ids}
    assert ids <= used | excluded


# --- the worker's reader of events messages ------------------------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.decimals(allow_nan=False).map(str),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


def _read(reader, value: bytes):
    try:
        return ("ok", reader(value))
    except Exception as e:
        return ("error", type(e).__name__)


@given(_JSON_VALUES)
@SETTINGS
def test_the_events_reader_reads_any_document_as_the_standard_library_does(doc):
    """``_loads`` reads with orjson when it can: the same values as ``json.loads`` (integers of
    any size stay integers, NaN and infinities are read, duplicate keys keep the last)."""
    import json

    from connectors.codec import loads as _loads

    for text in (json.dumps(doc), json.dumps(doc, ensure_ascii=False), json.dumps({"a": doc, "b": 1, "a ": 2})):
        value = text.encode("utf-8", "surrogatepass")
        got, want = _read(_loads, value), _read(json.loads, value)
        assert repr(got) == repr(want)  # repr: NaN equals itself, 1 and 1.0 and True differ


@given(st.binary(max_size=64) | st.text(alphabet='{}[]",:0123456789.eE+-truefalsnNIiy \\u', max_size=40).map(str.encode))
@SETTINGS
def test_the_events_reader_refuses_what_the_standard_library_refuses(value):
    import json

    from connectors.codec import loads as _loads

    assert repr(_read(_loads, value)) == repr(_read(json.loads, value))


@given(st.dictionaries(st.text(max_size=12), st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=4), max_size=4),
       st.dictionaries(st.text(max_size=12), st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=4), max_size=3),
       st.integers(min_value=0, max_value=2**70), st.none() | st.text(max_size=20), st.lists(st.text(max_size=10), max_size=3))
@SETTINGS
def test_a_state_is_written_as_pydantic_writes_it(records, published, revision, blocked, waiting):
    """The changelog writer (orjson over the state's fields, pydantic for what orjson refuses)
    gives model_dump_json()'s bytes, whatever JSON the records and charges hold."""
    from connectors.state import COMPRESS_FROM_BYTES, EncounterState

    state = EncounterState(encounter_id="e-1", records=records, published=published, revision=revision,
                           last_record_ms=revision, blocked=blocked, waiting=waiting)
    want = state.model_dump_json().encode()
    written = state.to_bytes()
    assert (written if len(want) <= COMPRESS_FROM_BYTES else zlib.decompress(written)) == want


@given(st.binary(max_size=80) | st.lists(st.sampled_from([b"1234567890", b"123456789", b"9", b"-", b".", b"e", b"\x00", b"\xb9"]),
                                           max_size=12).map(b"".join))
@SETTINGS
def test_a_run_of_19_digits_is_found_as_the_regular_expression_finds_it(value):
    """The events reader leaves a document with a 19-digit run to the standard library (orjson
    reads a long integer as a float); the run is found without the regex engine."""
    import re

    from connectors.codec import has_long_digits

    assert has_long_digits(value) == (re.search(rb"[0-9]{19}", value) is not None)


@SETTINGS
@given(encounter_events(), st.data())
def test_deleting_one_administration_never_moves_a_line_id_to_another_service(events, data) -> None:
    """ChargeItem ids name what a line is about: removing one administration withdraws or
    changes the lines that referenced it; no id comes to mean another service, and every line
    about the same administrations, date and part keeps its id."""
    from mapping.chargeitem_out import charge_item_ids

    gone = data.draw(st.sampled_from([e.id for e in events]))
    before, after = _code(events), _code([e for e in events if e.id != gone])

    def about(result) -> dict[str, tuple]:
        subjects = [(tuple(sorted(ln.administration_ids)), ln.service_date, ln.system,
                     ln.rule.endswith("added-hour") or ln.rule == "drug.wasted") for ln in result.lines]
        return dict(zip(charge_item_ids("enc-1", result.lines), subjects, strict=True))

    old, new = about(before), about(after)
    for item_id, subject in new.items():
        if item_id in old:
            assert old[item_id] == subject  # the same id: the same administrations, date and part
    for item_id, subject in old.items():
        if gone not in subject[0] and subject in new.values():
            assert item_id in new  # a line about what is still there keeps its id
