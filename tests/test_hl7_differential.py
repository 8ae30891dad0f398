"""The lean HL7 reader against hl7apy, field by field; and fuzzing of the HL7 mapper.

Differential: over the bundled samples, every supported version and generated messages
(values with escape sequences, repetitions, empty and trailing fields, Z-segments, other
encoding characters), ``extract`` must give identical values through both readers.
Fuzz: whatever text arrives, the mapper raises nothing but MappingError.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapping.errors import MappingError
from mapping.hl7_er7 import DEFAULT_ENCODING, Segment, read_segments, split_messages
from mapping.hl7_in import extract, map_message
from mapping.hl7_reference import read_segments_reference
from tests.hl7_builders import message, msh, orc, pid, pv1, rxa, rxr, segment

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SENDERS = Path(__file__).resolve().parent / "data" / "hl7"
VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"]  # what hl7apy knows
TZ = ZoneInfo("America/New_York")


def same_values(text: str) -> None:
    lean = extract(read_segments(text))
    reference = extract(read_segments_reference(text))
    assert lean == reference


def corpus() -> list[str]:
    paths = [*sorted(SAMPLES.glob("*.hl7")), *sorted(SENDERS.glob("*.hl7"))]
    return [m for path in paths for _, m in split_messages(path.read_text(encoding="latin-1"))]


def test_sender_corpus_reads_the_same():
    for text in corpus():
        same_values(text)


@pytest.mark.parametrize("version", VERSIONS)
def test_samples_in_every_version(version):
    for text in corpus():
        if "|2.7|" in text.split("\r", 1)[0]:
            continue  # five encoding characters (with #) exist from v2.7 only
        fields = text.split("\r", 1)[0].split("|")
        fields[11] = version
        same_values("\r".join(["|".join(fields), *text.split("\r")[1:]]))


def test_other_encoding_characters():
    text = message(
        msh("E1", fs="#", enc="$*!@"),
        "PID#1##A1$$$H*B2",
        "PV1#1#O#################V9",
        "ORC#RE#P1#F1",
        "RXA#0#1#20261102093000#20261102103000#J9312$ritux!S!imab$HPC#700#mg#############CP#A",
        "RXR#IV#LA#PORT1@lumen$Port#IVP",
    )
    same_values(text)
    assert extract(read_segments(text))[1][0]["drug_text"] == "ritux$imab"


# Field text as senders write it: letters, digits, spaces, punctuation and escape sequences.
_atom = st.sampled_from(["A", "z", "7", " ", ".", "-", "/", "(", "%", "\\X41\\", "\\F\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\.br\\", "é"])
_text = st.lists(_atom, max_size=8).map("".join)
_component = st.one_of(st.just(""), _text)
_field = st.lists(st.lists(_component, min_size=1, max_size=4).map("^".join), min_size=1, max_size=3).map("~".join)
_stamp = st.sampled_from(["20261102093000", "202611020930-0500", "20261102", "", "20260308023000"])


@st.composite
def ras_messages(draw) -> str:
    version = draw(st.sampled_from(VERSIONS))
    segs = [msh(draw(st.text("ABC0123456789", min_size=1, max_size=8)), version=version),
            pid(draw(_text) or "X"), pv1(draw(_text) or "V", draw(st.sampled_from(["O", "I", "E", ""])))]
    for _ in range(draw(st.integers(1, 3))):
        segs.append(orc(draw(_text), draw(_text)))
        for _ in range(draw(st.integers(1, 3))):
            segs.append(rxa(draw(_stamp), draw(_stamp), code=draw(_text), text=draw(_text), system=draw(_text),
                            amount=draw(st.sampled_from(["", "1", "2.5", "700"])), units=draw(_text),
                            status=draw(st.sampled_from(["CP", "PA", ""])), f9=draw(_field), f12=draw(st.sampled_from(["", "H1"]))))
        # RXR-6 exists from v2.5; hl7apy cannot place fields a version does not define.
        modifier = draw(_field) if version >= "2.5" else ""
        segs.append(rxr(draw(_field), draw(_field), draw(_field), draw(_field), modifier))
        if draw(st.booleans()):
            segs.append(segment("ZPX", {1: draw(_field), 3: draw(_field)}))
    trailing = draw(st.sampled_from(["", "|", "|||"]))
    return "\r".join(s + trailing if not s.startswith("MSH") else s for s in segs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ras_messages())
def test_generated_messages_read_the_same(text):
    same_values(text)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["RXA", "PID", "MSH"]),
       st.lists(st.sampled_from(["|", "^", "~", "&", '""', ' ""', "\\F\\", "\\", "A", " B1 ", "."]), max_size=24).map("".join),
       st.lists(st.tuples(st.integers(1, 8), st.integers(1, 4)), min_size=1, max_size=8))
def test_read_many_is_get_of_each_value(name, text, reads):
    """The batch read (with its shortcut for segments holding no escape or sub-component
    character) gives what reading each value on its own gives, stripped (MSH-1 and MSH-2, the
    encoding characters, are read with ``get`` only)."""
    reads = [(f, c) for f, c in reads if name != "MSH" or f > 2]
    segment = Segment(name + "|" + text, DEFAULT_ENCODING)
    named = [(f"r{i}", f, c) for i, (f, c) in enumerate(reads)]
    expected = {n: Segment(name + "|" + text, DEFAULT_ENCODING).get(f, c).strip() for n, f, c in named}
    assert segment.read_many(named) == expected


# --- fuzz: only MappingError escapes ---------------------------------------------------------


def _only_mapping_errors(text: str) -> None:
    for _, m in split_messages(text):
        try:
            map_message(m, TZ)
        except MappingError:
            pass


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("MSHRXAPIDVORC|^~\\&\r\n\x0b\x1c0123456789.+-_ Z\"")), max_size=300))
def test_fuzz_hl7_alphabet(text):
    _only_mapping_errors(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_any_text(text):
    _only_mapping_errors("MSH|^~\\&|" + text)
    _only_mapping_errors(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ras_messages(), st.data())
def test_fuzz_mutated_valid_messages(text, data):
    """Delete, duplicate or replace a slice of a valid message."""
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 20)))
    insert = data.draw(st.sampled_from(["", "|", "^", "\\", "\r", "~", "&", "\\X4\\", "\\Xzz\\", "99999999999999999999", "-0000", "\x00"]))
    _only_mapping_errors(text[:i] + insert + text[j:])
