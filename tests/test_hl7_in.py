"""HL7 v2 in: the ER7 reader, the RAS/ADT field table, times, updates, errors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from coding_core.engine import code_encounter
from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM
from coding_core.model import AdminStatus, EncounterClass, Method, Route
from coding_core.profile import FormularyOverride, Profile
from mapping.collector import FeedCollector
from mapping.errors import MappingError
from mapping.hl7_er7 import Encoding, read_segments, split_messages, unescape
from mapping.hl7_in import HL7_FIELDS, add_hl7_text, map_message
from mapping.reference_data import formulary_for, load_formulary
from tests.hl7_builders import message, msh, orc, pid, pv1, ras, rxa, rxr, segment

TZ = ZoneInfo("America/New_York")
T0 = "20261102093000"


def one(*body: str, visit: str = "V1", patient_class: str = "O"):
    """Map a RAS message with one order group and return its single administration event."""
    records = map_message(ras("C1", visit, [("F1", body)], patient_class=patient_class), TZ)
    (admin,) = [r.administration for r in records if r.kind == "administration"]
    return admin


# --- the ER7 reader ----------------------------------------------------------------------


def test_split_messages_mllp_and_line_endings():
    a = message(msh("A"), pid(), sep="\r\n")
    b = message(msh("B"), pid(), sep="\n")
    c = message(msh("C"), pid(), sep="\r")
    stream = f"\x0b{a}\x1c\r\x0b{b}\x1c\r\n{c}\n\n"
    msgs = list(split_messages(stream))
    assert [n for n, _ in msgs] == [1, 2, 3]
    assert [read_segments(m)[0].get(10) for _, m in msgs] == ["A", "B", "C"]
    assert all("\n" not in m for _, m in msgs)


def test_fields_components_repetitions_and_trailing_empties():
    seg = read_segments(message(msh(), "PID|1||A1^^^H^MR~B2^^^H^PI||X^Y|||||"))[1]
    assert seg.get(3) == "A1" and seg.get(3, 4) == "H" and seg.get(3, 1, 2) == "B2"
    assert seg.get(3, 1, 3) == "" and seg.get(3, 9) == "" and seg.get(30) == ""
    assert seg.repetitions(3) == 2 and seg.repetitions(2) == 0


def test_msh_numbering():
    seg = read_segments(msh("CTRL"))[0]
    assert (seg.get(1), seg.get(2), seg.get(9), seg.get(9, 2), seg.get(10)) == ("|", "^~\\&", "RAS", "O17", "CTRL")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("\\H\\bold\\N\\", "bold"),
        ("\\X41C3A9\\", "AÃ©"),  # hex bytes read as ISO 8859-1
        ("\\Zlocal\\x", "x"),  # unknown sequences are dropped
        ("no escapes", "no escapes"),
    ],
)
def test_unescape(raw, expected):
    assert unescape(raw, Encoding()) == expected


def test_non_default_encoding_characters():
    text = message(msh("E1", fs="#", enc="$*!@"), "PID#1##A1$$$H*B2")
    segs = read_segments(text)
    assert segs[0].get(10) == "E1" and segs[1].get(3) == "A1" and segs[1].get(3, 4) == "H" and segs[1].get(3, 1, 2) == "B2"
    assert unescape("x!S!y", Encoding("#", "$", "*", "!", "@")) == "x$y"


def test_hl7_null_and_subcomponents():
    seg = read_segments(message(msh(), 'RXR|IV|""|PORT1&lumen A^Port'))[1]
    assert seg.get(2) == "" and seg.get(3) == "PORT1" and seg.get(3, 2) == "Port"


def test_invalid_encoding_characters():
    with pytest.raises(MappingError, match="MSG1: MSH-2: invalid encoding characters"):
        map_message(message(msh(enc="^^\\&"), pid()), TZ)
    assert read_segments(message(msh(enc="^~\\"), "PID|1||A^B"))[1].get(3, 2) == "B"  # no sub-component char


# --- RAS -> administration events, row by row of HL7_FIELDS --------------------------------


def test_a_complete_ras_administration():
    ev = one(rxa(T0, "20261102113000", f9="^given via port"), rxr("IV", "LA^Left arm", "PORT1^Implanted port", "IVPB"))
    assert ev.id == "F1-0-1" and ev.encounter_id == "V1" and ev.patient_id == "MRN1"
    assert ev.start == datetime(2026, 11, 2, 9, 30, tzinfo=TZ) and ev.end - ev.start == timedelta(hours=2)
    assert [(c.system, c.code, c.display) for c in ev.drug_codings] == [(HCPCS_SYSTEM, "J9312", "rituximab")]
    assert ev.dose is not None and (ev.dose.value, ev.dose.unit) == (Decimal(700), "mg")
    assert ev.route is Route.IV and ev.method is Method.INFUSION
    assert ev.access_device == "PORT1" and ev.access_type == "port" and ev.body_site == "LA"
    assert ev.status is AdminStatus.COMPLETED


def test_every_field_in_the_table_is_read_somewhere():
    import inspect

    import mapping.hl7_in as hl7_in

    source = inspect.getsource(hl7_in)
    uses = {name: len(re.findall(rf"[\"']{name}[\"']", source)) for name in HL7_FIELDS}
    assert [name for name, n in uses.items() if n < 2] == []  # the table row itself is one use


@pytest.mark.parametrize(
    ("route", "expected"),
    [("IV", Route.IV), ("SC", Route.SC), ("IM", Route.IM), ("IA", Route.INTRA_ARTERIAL), ("PO", Route.ORAL),
     ("^Intravenous", Route.IV), ("XYZ", Route.UNRECOGNISED), ("", Route.UNKNOWN), ("C28161^Intramuscular^NCIT", Route.IM),
     ("47625008^IV route^SCT", Route.IV), ("INJ^Injection", Route.UNRECOGNISED), ("IVPB", Route.IV)],
)
def test_route_rxr1(route, expected):
    assert one(rxa(T0, T0), rxr(route=route)).route is expected


@pytest.mark.parametrize(("method", "expected"), [("IVP", Method.PUSH), ("IVPB", Method.INFUSION), ("IR", Method.FLUSH), ("", Method.UNKNOWN)])
def test_method_rxr4(method, expected):
    assert one(rxa(T0, T0), rxr(method=method)).method is expected


def test_site_with_modifier_when_no_device():
    ev = one(rxa(T0, T0), rxr(site="RA^Right arm", device="", site_modifier="L^Lower"))
    assert ev.access_device is None and ev.body_site == "RA L" and ev.access_site == "site:RA L"


def test_one_rxr_applies_to_each_rxa_before_it():
    records = map_message(ras("C1", "V1", [("F1", [rxa(T0, T0, sub="1"), rxa(T0, T0, sub="2", code="J2405"), rxr(device="PICC2^PICC line")])]), TZ)
    admins = [r.administration for r in records if r.kind == "administration"]
    assert [a.id for a in admins] == ["F1-0-1", "F1-0-2"]
    assert {a.access_device for a in admins} == {"PICC2"} and {a.access_type for a in admins} == {"picc"}


@pytest.mark.parametrize(
    ("system", "uri"),
    [("HPC", HCPCS_SYSTEM), ("NDC", NDC_SYSTEM), ("RXNORM", RXNORM_SYSTEM), ("ACMEPHARM", "urn:local:ACMEPHARM"), ("", "urn:local:unspecified")],
)
def test_coding_systems_rxa5(system, uri):
    ev = one(rxa(T0, T0, code="X1", system=system), rxr())
    assert ev.drug_codings[0].system == uri
    assert (ev.ndc == "X1") is (system == "NDC")


def test_alternate_code_rxa5():
    ev = one(rxa(T0, T0, code="50242-051-21", text="Rituxan", system="NDC") .replace("^NDC|", "^NDC^121191^rituximab^RXNORM|"), rxr())
    assert [(c.system, c.code) for c in ev.drug_codings] == [(NDC_SYSTEM, "50242-051-21"), (RXNORM_SYSTEM, "121191")]


def test_rate_from_rxa12_and_volume_from_rxa23():
    ev = one(rxa(T0, "", code="J7030", text="NS", amount="125", units="mL", f12="H1", f23="1000", f24="mL"), rxr())
    assert ev.rate_ml_per_h == 125 and ev.volume_ml == 1000 and ev.dose is None
    ev = one(rxa(T0, "", code="J7030", text="NS", amount="2", units="mL", f12="M1"), rxr())
    assert ev.rate_ml_per_h == 120


def test_a_drug_rate_is_kept_as_text_and_never_rejects_the_message():
    ev = one(rxa(T0, "", amount="5", units="mg", f12="H1"), rxr())
    assert ev.drug_rate == "5 mg/h" and ev.rate_ml_per_h is None and ev.dose is None
    ev = one(rxa(T0, "", amount="100", units="mg/min"), rxr())
    assert ev.drug_rate == "100 mg/min" and ev.dose is None


@pytest.mark.parametrize("f12", ["100mg/min", "H" + "7" * 5000, "H1.5", "H0", "fortnight"])
def test_an_rxa12_that_is_not_a_time_unit_is_ignored_with_a_warning(f12):
    ev = one(rxa(T0, "", code="J7030", text="NS", amount="125", units="mL", f12=f12), rxr())
    assert ev.rate_ml_per_h is None and ev.drug_rate is None
    assert [w for w in ev.source_warnings if w.startswith("RXA-12") and f12 not in w]
    assert ev.dose is not None and (ev.dose.value, ev.dose.unit) == (125, "mL")  # RXA-6/7 is then the dose


def test_volume_from_a_dose_in_ml():
    assert one(rxa(T0, T0, code="J7030", amount="1", units="L"), rxr()).volume_ml == 1000


def test_kvo_in_notes():
    assert one(rxa(T0, "", code="J7030", amount="10", units="mL", f9="^NS at KVO"), rxr()).kvo is True


@pytest.mark.parametrize(
    ("status", "expected"),
    [("CP", AdminStatus.COMPLETED), ("", AdminStatus.COMPLETED), ("PA", AdminStatus.STOPPED), ("RE", AdminStatus.NOT_DONE), ("NA", AdminStatus.NOT_DONE)],
)
def test_completion_status_rxa20(status, expected):
    assert one(rxa(T0, T0, status=status), rxr()).status is expected


def test_push_with_one_time_is_complete_infusion_is_not():
    push = one(rxa(T0, ""), rxr(method="IVP"))
    assert push.end == push.start
    assert one(rxa(T0, ""), rxr(method="IVPB")).end is None
    injection = one(rxa(T0, "", code="J9217"), rxr(route="SC", device=""))
    assert injection.end == injection.start


# --- time stamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "expected", "warning"),
    [
        ("20261102093000-0500", datetime(2026, 11, 2, 14, 30, tzinfo=timezone.utc), None),
        ("202611020930+0100", datetime(2026, 11, 2, 8, 30, tzinfo=timezone.utc), None),
        ("20261102093000.1234", datetime(2026, 11, 2, 14, 30, 0, 123400, tzinfo=timezone.utc), None),
        ("20260702093000", datetime(2026, 7, 2, 13, 30, tzinfo=timezone.utc), None),  # local, EDT
        ("20261101013000", datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc), "ambiguous"),  # 01:30 happens twice
        ("20260308023000", datetime(2026, 3, 8, 7, 30, tzinfo=timezone.utc), "does not exist"),  # 02:30 skipped
        ("20261102", None, "no time of day"),
    ],
)
def test_timestamps(stamp, expected, warning):
    ev = one(rxa(stamp, stamp), rxr())
    assert ev.start == expected
    if warning is None:
        assert ev.source_warnings == ()
    else:
        assert ev.source_warnings and all(warning in w for w in ev.source_warnings)
        assert ev.source_warnings[0].startswith("RXA-3")


@pytest.mark.parametrize("stamp", ["2026-11-02", "20261302093000", "20261102256000", "20261102093000+2500", "tomorrow"])
def test_bad_timestamps_name_the_field(stamp):
    with pytest.raises(MappingError) as e:
        one(rxa(stamp, ""), rxr())
    assert e.value.record_id == "C1" and "RXA-3:" in str(e.value)


# --- updates, deletes, ADT ------------------------------------------------------------------


def feed(*messages: str) -> FeedCollector:
    c = FeedCollector()
    add_hl7_text(c, "\r".join(messages), source="feed.hl7", tz=TZ)
    return c


def test_update_and_delete_by_action_code():
    add = ras("C1", "V1", [("F1", [rxa(T0, "20261102100000"), rxr()])])
    resent = ras("C2", "V1", [("F1", [rxa(T0, "20261102100000"), rxr()])])
    update = ras("C3", "V1", [("F1", [rxa(T0, "20261102110000", action="U"), rxr()])])
    c = feed(add, resent, update)
    assert c.duplicates == 1 and c.replaced == 1
    assert c.administrations["F1-0-1"].administration.end == datetime(2026, 11, 2, 11, tzinfo=TZ)
    delete = ras("C4", "V1", [("F1", [rxa(T0, "20261102110000", action="D"), rxr()])])
    c = feed(add, delete)
    assert c.administrations["F1-0-1"].administration.status is AdminStatus.ENTERED_IN_ERROR


def adt(trigger: str, control: str, patient_class: str = "O", **pv1_extra: str) -> str:
    return message(msh(control, message=f"ADT^{trigger}"), segment("EVN", {1: trigger}), pid(), pv1("V1", patient_class, **pv1_extra))


def test_adt_open_close_cancel_reopen_reclassify():
    ras_msg = ras("R1", "V1", [("F1", [rxa(T0, "20261102100000"), rxr()])])
    c = feed(adt("A04", "A1", f44="20261102090000"), ras_msg, adt("A03", "A2", f45="20261102120000"))
    info, _ = c.by_encounter()["V1"]
    assert info.status == "finished" and info.period_end == datetime(2026, 11, 2, 12, tzinfo=TZ)
    assert info.period_start == datetime(2026, 11, 2, 9, tzinfo=TZ) and info.encounter_class is EncounterClass.AMBULATORY
    c = feed(adt("A04", "A1"), ras_msg, adt("A03", "A2", f45="20261102120000"), adt("A13", "A3"))
    info, _ = c.by_encounter()["V1"]
    assert info.status == "in-progress" and info.period_end is None
    c = feed(adt("A04", "A1"), ras_msg, adt("A11", "A3"))
    assert c.by_encounter()["V1"][0].status == "cancelled"
    c = feed(adt("A04", "A1"), ras_msg, adt("A08", "A3", patient_class="I"))
    assert c.by_encounter()["V1"][0].encounter_class is EncounterClass.INPATIENT
    # A06 (outpatient admitted as inpatient) and A07 (the reverse) change the class too
    c = feed(adt("A04", "A1"), ras_msg, adt("A06", "A3", patient_class="I"))
    assert c.by_encounter()["V1"][0].encounter_class is EncounterClass.INPATIENT
    c = feed(adt("A01", "A1", patient_class="I"), ras_msg, adt("A07", "A3", patient_class="O"))
    assert c.by_encounter()["V1"][0].encounter_class is EncounterClass.AMBULATORY


def test_observation_patient_type_and_other_adt_events_ignored():
    c = feed(adt("A04", "A1", f18="OBS"), adt("A31", "A2"), ras("R1", "V1", [("F1", [rxa(T0, T0), rxr()])]))
    assert c.by_encounter()["V1"][0].encounter_class is EncounterClass.OBSERVATION
    assert c.ignored == 1 and c.errors == []


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "located"),
    [
        (message(msh("C9", message="ORU^R01"), pid(), pv1()), "C9: MSH-9: not a RAS or ADT message"),
        (message(msh("C9", message="RAS^O99"), pid(), pv1()), "C9: MSH-9.2: not a RAS"),
        (message(msh("C9"), pid(), pv1(visit=""), orc(), rxa(T0, T0), rxr()), "C9: PV1-19: no visit number"),
        (message(msh("C9"), pid(), pv1(), orc("", ""), rxa(T0, T0), rxr()), "C9: ORC-3/ORC-2: no order number"),
        (message(msh("C9"), pid(), pv1(), orc(), rxa(T0, T0, status="XX"), rxr()), "C9: RXA-20: not a completion status"),
        (message(msh("C9"), pid(), pv1(), orc(), rxa(T0, T0, action="Z"), rxr()), "C9: RXA-21: not an action code"),
        (message(msh("C9"), pid(), pv1(), orc(), rxa(T0, T0, code="", text=""), rxr()), "C9: RXA-5: no administered code"),
        (message(msh("C9"), pid(), pv1(), orc(), rxa(T0, T0, amount="lots"), rxr()), "C9: RXA-6: not a number"),
        (message(msh("C9"), pid(), pv1()), "C9: RXA: a RAS message without an RXA"),
        (message(msh("C9"), "this is not a segment"), "C9: not an HL7 segment"),
        ("PID|1||X", "message does not start with an MSH segment"),
    ],
)
def test_malformed_messages_name_control_id_segment_and_field(text, located):
    with pytest.raises(MappingError) as e:
        map_message(text, TZ)
    assert located in str(e.value)


def test_errors_never_carry_values():
    secret = "SMITH-JOHN-19551231"
    bad = message(msh("C9"), pid(secret), pv1(), orc(), rxa(secret, T0), rxr(site=secret))
    with pytest.raises(MappingError) as e:
        map_message(bad, TZ)
    assert secret not in str(e.value) and "RXA-3" in str(e.value)


def test_a_bad_message_among_good_ones_is_reported_and_the_rest_read():
    good = ras("G1", "V1", [("F1", [rxa(T0, T0), rxr()])])
    bad = message(msh("B1"), pid(), pv1(visit=""), orc(), rxa(T0, T0), rxr())
    good2 = ras("G2", "V2", [("F2", [rxa(T0, T0), rxr()])])
    c = feed(good, bad, good2)
    assert set(c.administrations) == {"F1-0-1", "F2-0-1"}
    assert [(e.position, e.record_id) for e in c.errors] == [("message 2", "B1")]


# --- senders' styles -------------------------------------------------------------------------

SENDERS = Path(__file__).resolve().parent / "data" / "hl7"


@pytest.mark.parametrize(
    ("file", "visit", "expected"),
    [
        # v2.3 RAS^O01, MLLP framed, offsets, body site only, NDC as a second RXA-5 repetition
        ("meditech-v23-mllp.hl7", "C23001", {("96413", 1), ("96375", 1), ("J1745", 50), ("J1200", 1)}),
        # v2.4, CRLF, repeated PID-3, Z-segments, escapes in RXA-5 and RXR-3, trailing empty fields
        ("omnicell-v24-crlf.hl7", "U24V001", {("96413", 1), ("96415", 1), ("96375", 1), ("J9035", 50), ("J2405", 8)}),
        # v2.7, LF, five encoding characters, local times, RXR-6 site modifier
        ("epic-v27-lf.hl7", "G27V1", {("96365", 1), ("J3370", 2)}),
    ],
)
def test_sender_styles(file, visit, expected):
    c = FeedCollector()
    add_hl7_text(c, (SENDERS / file).read_text(encoding="latin-1"), source=file, tz=TZ)
    assert c.errors == []
    info, events = c.by_encounter()[visit]
    result = code_encounter(info, events, load_formulary(), Profile())
    assert {(ln.code, ln.units) for ln in result.lines} == expected


def test_sender_escapes_and_repetitions_are_read():
    c = FeedCollector()
    add_hl7_text(c, (SENDERS / "omnicell-v24-crlf.hl7").read_text(), source="x", tz=TZ)
    ev = c.administrations["FL9-0-1"].administration
    assert ev.drug_text == "bevacizumab (Avastin~ biosim^ref)" and ev.patient_id == "A123"
    assert ev.access_device == "PORT" and ev.access_type == "port"


def test_local_code_resolves_through_a_formulary_alias():
    profile = Profile(formulary_overrides=(FormularyOverride(hcpcs="J9312", local_codes=("RITUX500",)),))
    c = FeedCollector()
    add_hl7_text(c, ras("C1", "V1", [("F1", [rxa(T0, "20261102103000", code="RITUX500", text="ritux 500", system="ACMEPHARM"), rxr()])]),
                 source="x", tz=TZ)
    info, events = c.by_encounter()["V1"]
    with_alias = code_encounter(info, events, formulary_for(profile, load_formulary()), profile)
    without = code_encounter(info, events, load_formulary(), Profile())
    assert ("J9312", 70) in {(ln.code, ln.units) for ln in with_alias.lines}
    assert "96413" in {ln.code for ln in with_alias.lines}
    assert "J3490" in {ln.code for ln in without.lines}  # unknown without the alias: unclassified, not dropped


def test_adt_events_arriving_out_of_order_are_ordered_by_msh7():
    def adt_at(trigger, control, sent, **pv1_extra):
        return message(msh(control, message=f"ADT^{trigger}", time=sent), segment("EVN", {1: trigger}), pid(), pv1("V1", "O", **pv1_extra))

    ras_msg = ras("R1", "V1", [("F1", [rxa(T0, T0), rxr()])])
    # the discharge (11:00) is read before the registration (07:15) that was sent first
    c = feed(adt_at("A03", "A2", "20261102110000", f45="20261102110000"), ras_msg, adt_at("A04", "A1", "20261102071500", f44="20261102071000"))
    info = c.by_encounter()["V1"][0]
    assert info.status == "finished" and info.period_end == datetime(2026, 11, 2, 11, tzinfo=TZ)
    assert info.period_start == datetime(2026, 11, 2, 7, 10, tzinfo=TZ)  # the older message still fills gaps
    # and a newer A13 does reopen it
    c = feed(adt_at("A03", "A2", "20261102110000"), adt_at("A13", "A3", "20261102113000"))
    assert c.encounters["V1"].encounter.status == "in-progress"


def test_an_older_update_arriving_late_does_not_undo_a_newer_one():
    def ras_at(control, sent, end, action):
        return message(msh(control, time=sent), pid(), pv1("V1"), orc(filler="F1"), rxa(T0, end, action=action), rxr())

    c = feed(ras_at("C2", "20261102120000", "20261102113000", "U"), ras_at("C1", "20261102110000", "20261102100000", "U"))
    assert c.administrations["F1-0-1"].administration.end == datetime(2026, 11, 2, 11, 30, tzinfo=TZ)
    c = feed(ras_at("C2", "20261102120000", "20261102113000", "D"), ras_at("C1", "20261102110000", "20261102100000", "A"))
    assert c.administrations["F1-0-1"].administration.status is AdminStatus.ENTERED_IN_ERROR


# --- review fixes: numeric edges, framing, free text, rates in RXA-7, envelopes, X, EVN-1 ------


@pytest.mark.parametrize(
    ("fields", "located"),
    [
        ({"amount": "9E999999", "units": "mL", "f12": "H1"}, "RXA-6"),  # was decimal.Overflow
        ({"amount": "9E999999", "units": "mL"}, "RXA-6"),
        ({"amount": "7" * 5000, "units": "mg"}, "RXA-6"),
        ({"amount": "1E-999999", "units": "mL", "f12": "H1"}, "RXA-6"),
        ({"amount": "NaN", "units": "mg"}, "RXA-6"),
        ({"amount": "sNaN", "units": "mg"}, "RXA-6"),
        ({"amount": "Infinity", "units": "mg"}, "RXA-6"),
        ({"amount": "-1", "units": "mg"}, "RXA-6"),
        ({"f23": "9E999999", "f24": "mL"}, "RXA-23"),  # was decimal.Overflow
        ({"f23": "-1", "f24": "mL"}, "RXA-23"),
    ],
)
def test_numeric_edge_values_are_mapping_errors_naming_the_field(fields, located):
    with pytest.raises(MappingError) as e:
        one(rxa(T0, "", code="J7030", text="NS", **fields), rxr())
    assert e.value.record_id == "C1" and f"{located}:" in str(e.value)
    for value in fields.values():
        if value not in ("mL", "mg", "H1"):
            assert value not in str(e.value)


@pytest.mark.parametrize("stamp", ["99991231235959", "18991231235959", "00010101000000", "99991231"])
def test_implausible_years_are_rejected_at_mapping(stamp):
    with pytest.raises(MappingError) as e:
        one(rxa(stamp, ""), rxr())
    assert e.value.record_id == "C1" and "RXA-3:" in str(e.value) and stamp not in str(e.value)


@pytest.mark.parametrize("error", [ArithmeticError, ValueError, OverflowError, __import__("decimal").Overflow])
def test_arithmetic_errors_while_mapping_become_mapping_errors(monkeypatch, error):
    import mapping.hl7_in as hl7_in

    def boom(*args, **kwargs):
        raise error("SECRET-VALUE-123")

    monkeypatch.setattr(hl7_in, "_administration", boom)
    with pytest.raises(MappingError) as e:
        one(rxa(T0, T0), rxr())
    assert e.value.record_id == "C1" and "SECRET" not in str(e.value)


def test_a_leading_byte_order_mark_is_dropped():
    msg = ras("C1", "V1", [("F1", [rxa(T0, T0), rxr()])])
    for text in ("\ufeff" + msg, f"\x0b\ufeff{msg}\x1c\r", f"\ufeff\x0b\ufeff{msg}\x1c\r"):
        c = feed(text)
        assert c.errors == [] and set(c.administrations) == {"F1-0-1"}


def test_a_bare_newline_inside_free_text_is_part_of_the_field():
    nte = "NTE|1||tolerated well.\nJANE DOE called family\n\nat 10:00"
    msg = message(msh("C1"), pid(), pv1("V1"), orc(filler="F1"), rxa(T0, T0), nte, rxr(device="PICC2^PICC line"))
    c = feed(msg, ras("C2", "V2", [("F2", [rxa(T0, T0), rxr()])]))
    assert c.errors == [] and set(c.administrations) == {"F1-0-1", "F2-0-1"}
    assert c.administrations["F1-0-1"].administration.access_device == "PICC2"  # the RXR after the NTE still applies
    ((_, read),) = [m for m in split_messages(msg)]
    assert "NTE|1||tolerated well. JANE DOE called family at 10:00" in read.split("\r")
    # a newline followed by a segment still separates segments (mixed separators)
    mixed = message(msh("C3"), pid(), pv1("V3"), sep="\r") + "\n" + message(orc(filler="F3"), rxa(T0, T0), rxr(), sep="\n")
    c = feed(mixed)
    assert c.errors == [] and set(c.administrations) == {"F3-0-1"}
    # LF-separated messages in MLLP frames closed by \r: any segment name still starts a segment
    framed = "\n".join([msh("A3", message="ADT^A03"), segment("EVN", {1: "A03"}), pid(), segment("NK1", {1: "1", 2: "DOE^JOHN"}),
                        pv1("V1", "O", f45="20261102120000"), segment("DG1", {1: "1", 3: "R11.2"})])
    c = feed(f"\x0b{framed}\x1c\r")
    assert c.errors == [] and c.encounters["V1"].encounter.period_end == datetime(2026, 11, 2, 12, tzinfo=TZ)


def test_an_unrecognised_line_is_named_by_position_never_by_its_text():
    with pytest.raises(MappingError) as e:
        map_message(message(msh("C9"), pid(), pv1(), "JANE DOE called family"), TZ)
    assert "JAN" not in str(e.value) and "segment 4" in str(e.value) and e.value.record_id == "C9"
    with pytest.raises(MappingError) as e:  # a known segment name is still named
        map_message(message(msh("C9"), pid(), "PV1/1/O"), TZ)
    assert "PV1: not an HL7 segment" in str(e.value)


@pytest.mark.parametrize(("units", "rate"), [("mL/h", 10), ("mL/hr", 10), ("ml/min", 600), ("L/h", 10000), ("mL / h", 10)])
def test_a_volume_per_time_unit_in_rxa7_is_a_rate(units, rate):
    ev = one(rxa(T0, "", code="J7030", text="NS", amount="10", units=units, f9="^NS KVO"), rxr())
    assert ev.rate_ml_per_h == rate and ev.dose is None and ev.volume_ml is None


def test_a_dose_per_weight_in_rxa7_stays_a_dose():
    ev = one(rxa(T0, T0, amount="5", units="mg/kg"), rxr())
    assert ev.dose is not None and ev.dose.unit == "mg/kg" and ev.rate_ml_per_h is None


def test_batch_envelope_segments_are_not_messages():
    text = "\r".join([
        "FHS|^~\\&|PYXIS|HOSP|||20261102", "BHS|^~\\&|PYXIS|HOSP|||20261102",
        ras("C1", "V1", [("F1", [rxa(T0, T0), rxr()])]), ras("C2", "V2", [("F2", [rxa(T0, T0), rxr()])]),
        "BTS|2", "FTS|1",
    ])
    c = feed(text)
    assert c.errors == [] and set(c.administrations) == {"F1-0-1", "F2-0-1"}
    assert [n for n, _ in split_messages(text)] == [1, 2]


def test_action_code_x_is_no_change():
    add = ras("C1", "V1", [("F1", [rxa(T0, "20261102100000"), rxr()])])
    same = ras("C2", "V1", [("F1", [rxa(T0, "20261102100000", action="X"), rxr()])])
    c = feed(add, same)
    assert c.errors == [] and c.duplicates == 1 and c.replaced == 0
    c = feed(same)
    assert c.errors == [] and set(c.administrations) == {"F1-0-1"}


def test_adt_trigger_from_evn1_when_msh9_has_none():
    old_style = message(msh("A2", message="ADT"), segment("EVN", {1: "A03"}), pid(), pv1("V1", "O", f45="20261102120000"))
    c = feed(adt("A04", "A1"), old_style)
    assert c.errors == [] and c.ignored == 0
    info = c.encounters["V1"].encounter
    assert info.status == "finished" and info.period_end == datetime(2026, 11, 2, 12, tzinfo=TZ)


def test_order_numbers_that_differ_only_in_unsafe_characters_stay_distinct():
    a = map_message(ras("C1", "V1", [("F_1/2", [rxa(T0, "20261102100000"), rxr()])]), TZ)[-1]
    b = map_message(ras("C2", "V1", [("F-1-2", [rxa(T0, "20261102100000"), rxr()])]), TZ)[-1]
    assert a.id != b.id and b.id == "F-1-2-0-1"
    assert all(c.isalnum() or c in ".-" for c in a.id) and len(a.id) <= 64


def test_two_administrations_of_one_order_with_the_same_sub_ids_are_an_error():
    text = ras("C7", "V1", [("F1", [rxa(T0, "20261102100000"), rxa(T0, "20261102093500", code="J2405", text="ondansetron", amount="8"), rxr()])])
    with pytest.raises(MappingError, match="C7: RXA-1/RXA-2: two administrations"):
        map_message(text, TZ)


def test_a_message_re_sent_with_the_same_control_id_and_changed_content_is_an_update_with_a_warning():
    first = ras("C1", "V1", [("F1", [rxa(T0, "20261102100000"), rxr()])])
    fixed = ras("C1", "V1", [("F1", [rxa(T0, "20261102103000"), rxr()])])  # the stop time corrected, same MSH-10
    c = feed(first, fixed)
    held = c.administrations["F1-0-1"].administration
    assert held.end is not None and held.end.minute == 30
    assert c.replaced == 1 and any("received again with different content" in w for w in held.source_warnings)
    again = feed(first, fixed, fixed)  # the corrected message once more: a duplicate now
    assert again.duplicates == c.duplicates + 1 and again.replaced == 1


def test_a_message_re_sent_unchanged_is_a_duplicate():
    first = ras("C1", "V1", [("F1", [rxa(T0, "20261102100000"), rxr()])])
    c = feed(first, first)
    assert c.replaced == 0 and c.duplicates >= 1
    assert not c.administrations["F1-0-1"].administration.source_warnings
