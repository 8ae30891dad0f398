"""Build HL7 v2 RAS/ADT messages field by field, so tests read like the spec tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ENC = "^~\\&"


def segment(name: str, fields: Mapping[int, str], fs: str = "|") -> str:
    """A segment with the given 1-based fields (missing ones empty)."""
    if not fields:
        return name
    width = max(fields)
    return fs.join([name, *(fields.get(i, "") for i in range(1, width + 1))])


def msh(control_id: str = "MSG1", message: str = "RAS^O17^RAS_O17", version: str = "2.5.1",
        time: str = "20261102093000", fs: str = "|", enc: str = ENC) -> str:
    # MSH-1 is the separator and MSH-2 the encoding characters: written by hand.
    rest = {3: "PYXIS", 4: "HOSP", 5: "CHARGES", 6: "HOSP", 7: time, 9: message, 10: control_id, 11: "P", 12: version}
    width = max(rest)
    return "MSH" + fs + enc + fs + fs.join(rest.get(i, "") for i in range(3, width + 1))


def pid(patient: str = "MRN1") -> str:
    return segment("PID", {1: "1", 3: f"{patient}^^^HOSP^MR", 5: "DOE^JANE", 7: "19700101"})


def pv1(visit: str = "V1", patient_class: str = "O", **extra: str) -> str:
    fields = {1: "1", 2: patient_class, 19: f"{visit}^^^HOSP^VN"}
    fields.update({int(k[1:]): v for k, v in extra.items()})  # e.g. f45="20261102110000"
    return segment("PV1", fields)


def orc(placer: str = "P1", filler: str = "F1") -> str:
    return segment("ORC", {1: "RE", 2: placer, 3: filler})


def rxa(start: str, end: str = "", code: str = "J9312", text: str = "rituximab", system: str = "HPC",
        amount: str = "700", units: str = "mg", sub: str = "1", status: str = "CP", action: str = "A",
        **extra: str) -> str:
    fields = {1: "0", 2: sub, 3: start, 4: end, 5: f"{code}^{text}^{system}", 6: amount, 7: units, 20: status, 21: action}
    fields.update({int(k[1:]): v for k, v in extra.items()})  # e.g. f12="H1"
    return segment("RXA", fields)


def rxr(route: str = "IV", site: str = "", device: str = "PORT1^Implanted port", method: str = "", site_modifier: str = "") -> str:
    return segment("RXR", {1: route, 2: site, 3: device, 4: method, 6: site_modifier})


def message(*segments: str, sep: str = "\r") -> str:
    return sep.join(segments)


def ras(control_id: str, visit: str, orders: Sequence[tuple[str, Sequence[str]]], patient_class: str = "O",
        version: str = "2.5.1") -> str:
    """orders: (filler number, [RXA..., RXR]) groups."""
    segs = [msh(control_id, version=version), pid(), pv1(visit, patient_class)]
    for filler, body in orders:
        segs.append(orc(filler=filler))
        segs.extend(body)
    return message(*segs)
