"""References between the entries of one Bundle, resolved as FHIR resolves them (R4 2.36.4,
"Resolving references in Bundles"), before each entry is mapped.

A reference that is an absolute URL or a ``urn:uuid:``/``urn:oid:`` matches the entry with that
``fullUrl``; a relative one (``Medication/123``, history part ignored) matches the entry whose
``fullUrl`` ends in it, else the entry whose resource has that type and id.  Then, for each
MedicationAdministration:

* the Medication it references (R4 ``medicationReference``, R5 ``medication.reference``) is
  copied into its ``contained`` resources (without ``meta`` and narrative, which contained
  resources do not carry) and the reference made local, so the mapper reads it as it reads a
  contained Medication;
* its references to an Encounter, Patient, Procedure or Device in the Bundle become literal
  ``Type/id`` references;
* a resource without an id in an entry whose ``fullUrl`` is ``urn:uuid:X`` (a transaction
  Bundle's new resources) is read with id X, so references to it and from it agree.

The input dicts are not changed: a resolved resource is a shallow copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_UUID = re.compile(r"urn:uuid:([0-9a-fA-F-]{36})")
_LITERAL = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+)/([^/]+)(?:/_history/[^/]+)?")
LINKED_TYPES = ("Encounter", "Patient", "Procedure", "Device")


def _own_id(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        return None
    if "id" not in resource:
        m = _UUID.fullmatch(str(entry.get("fullUrl") or ""))
        if m:
            return {**resource, "id": m.group(1)}
    return resource


class BundleIndex:
    """The entries of one Bundle by fullUrl and by type and id."""

    def __init__(self, entries: Iterable[Any]):
        self.by_url: dict[str, dict[str, Any]] = {}
        self.by_type_id: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in entries:
            resource = _own_id(entry) if isinstance(entry, Mapping) else None
            if resource is None:
                continue
            url = entry.get("fullUrl")
            if isinstance(url, str) and url:
                self.by_url[url] = resource
            rt, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rt, str) and isinstance(rid, str):
                self.by_type_id.setdefault((rt, rid), resource)

    def resolve(self, reference: str) -> dict[str, Any] | None:
        hit = self.by_url.get(reference)
        if hit is not None or reference.startswith(("urn:", "#")):
            return hit
        m = _LITERAL.fullmatch(reference)
        if m is None:
            return None
        for url, resource in self.by_url.items():  # a relative reference against absolute fullUrls
            if url.endswith("/" + m.group(1) + "/" + m.group(2)):
                return resource
        return self.by_type_id.get((m.group(1), m.group(2)))

    def __bool__(self) -> bool:
        return bool(self.by_url or self.by_type_id)


def resolved(entry: Mapping[str, Any], index: BundleIndex) -> Any:
    """The entry's resource as the mapper should read it (see the module's description)."""
    resource = _own_id(entry)
    if resource is None:
        return entry.get("resource")
    if resource.get("resourceType") != "MedicationAdministration" or not index:
        return resource
    out = dict(resource)
    for key in ("context", "encounter", "subject"):  # only those present: their names tell R4 from R5
        if key in out:
            out[key] = _literal(out[key], index)
    for key in ("partOf", "device"):
        if isinstance(out.get(key), list):
            out[key] = [_link(item, index) for item in out[key]]
    _contain_medication(out, index)
    return out


def _link(item: Any, index: BundleIndex) -> Any:
    if isinstance(item, dict) and isinstance(item.get("reference"), dict):  # R5 CodeableReference
        return {**item, "reference": _literal(item["reference"], index)}
    return _literal(item, index)


def _literal(ref: Any, index: BundleIndex) -> Any:
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str) or ref["reference"].startswith("#"):
        return ref
    target = index.resolve(ref["reference"])
    if target is None or target.get("resourceType") not in LINKED_TYPES or not isinstance(target.get("id"), str):
        return ref
    return {**ref, "reference": f"{target['resourceType']}/{target['id']}"}


def _contain_medication(ma: dict[str, Any], index: BundleIndex) -> None:
    holder: dict[str, Any] | None = None  # the Reference object to rewrite
    if isinstance(ma.get("medicationReference"), dict):
        holder = ma["medicationReference"] = dict(ma["medicationReference"])
    elif isinstance(ma.get("medication"), dict) and isinstance(ma["medication"].get("reference"), dict):
        ma["medication"] = dict(ma["medication"])
        holder = ma["medication"]["reference"] = dict(ma["medication"]["reference"])
    if holder is None or not isinstance(holder.get("reference"), str) or holder["reference"].startswith("#"):
        return
    target = index.resolve(holder["reference"])
    if target is None or target.get("resourceType") != "Medication":
        return
    contained = list(ma.get("contained") or [])
    taken = {c.get("id") for c in contained if isinstance(c, dict)}
    local = next(f"bundle-medication-{n}" for n in range(len(taken) + 1) if f"bundle-medication-{n}" not in taken)
    contained.append({k: v for k, v in target.items() if k not in ("meta", "text")} | {"id": local})
    ma["contained"] = contained
    holder["reference"] = "#" + local


def reference_form(reference: str) -> str:
    """What kind of reference this is, for an error that must not quote it."""
    if reference.startswith("#"):
        return "a contained reference #id"
    if reference.startswith("urn:uuid:"):
        return "a urn:uuid reference"
    if reference.startswith("urn:"):
        return "a urn reference"
    if re.match(r"[a-z][a-z0-9+.-]*://", reference, re.IGNORECASE):
        return "an absolute URL"
    m = _LITERAL.fullmatch(reference)
    return f"a relative reference {m.group(1)}/id" if m else "a reference of no known form"
