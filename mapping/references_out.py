"""References on published ChargeItems, in the form a FHIR server can resolve.

A FHIR-sourced reference is kept as the feed sent it (``Patient/123``, an absolute URL).  HL7 v2
names no resources, only identifiers and the authority that assigned them (PID-3.4, PV1-19.4,
PID-18.4, XCN-9, ORC-3.2): those become logical references, ``Reference.identifier`` with the
authority's URI from the profile's ``identifier_systems`` -- by ``<resource type>:<authority>``
(``Patient:GENHOSP``: the hospital's MRNs), else by the authority, else ``"*"`` (every authority
not listed, and none) -- else ``urn:infusion-charges:assigning-authority:<authority>`` -- never an invented
literal id such as ``Patient/MRN77001`` that exists on no server.  An identifier this product
made (an HL7 administration's id, built from ORC-3, RXA-1 and RXA-2) carries a system of the
product's own, :data:`ADMINISTRATION_SYSTEM`: no authority assigned it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from coding_core.model import Ref
from coding_core.profile import Profile

AUTHORITY_URN = "urn:infusion-charges:assigning-authority:"
ADMINISTRATION_SYSTEM = "urn:infusion-charges:administration"
UNSPECIFIED = "unspecified"


def identifier_system(resource_type: str, authority: str | None, profile: Profile) -> str:
    systems = profile.identifier_systems
    if authority:
        for key in (f"{resource_type}:{authority}", authority):
            if key in systems:
                return systems[key]
    if "*" in systems:
        return systems["*"]
    return AUTHORITY_URN + (quote(authority, safe="-._~") if authority else UNSPECIFIED)


def reference(ref: Ref, profile: Profile) -> dict[str, Any]:
    """A FHIR Reference (R4) for ``ref``: literal as sent, else logical by identifier."""
    if ref.reference:
        return {"reference": ref.reference}
    system = ref.system or identifier_system(ref.resource_type, ref.authority, profile)
    return {"type": ref.resource_type, "identifier": {"system": system, "value": ref.value}}
