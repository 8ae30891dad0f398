"""Vocabulary shared by the FHIR and HL7 v2 mappers: one table per concept, as data.

- :data:`CODE_SYSTEMS`: code systems recognised by canonical URI, by OID and by their HL7 v2
  coding-system name (CWE.3), each mapped onto one key.
- :data:`ROUTE_ROWS`: route codes (SNOMED CT route codes, HL7 v2 table 0162 in full, the FHIR/v3
  RouteOfAdministration codes of drug administrations, FDA route codes from NCI Thesaurus) ->
  what the coding core needs: IV, intra-arterial, subcutaneous, intramuscular, other parenteral,
  oral, or another non-parenteral route.
- :data:`METHOD_ROWS`: method codes (SNOMED CT dosing-instruction imperatives, HL7 v2 table 0165)
  -> push, infusion, injection, flush, pump refill, another technique, or "not said" (a generic
  verb such as "administer").
- :data:`ROUTE_WORDS` / :data:`METHOD_WORDS`: words as they appear in display and free text;
  :data:`ACCESS_TYPE_WORDS` and :data:`KVO_WORDS` likewise for the access type and keep-vein-open.
- The unit tables (``VOLUME_UNITS``, ``PER_HOUR``, ``DRUG_AMOUNT_UNITS``): volumes, rates and
  drug amounts as feeds write them.

A code is looked up in its own system's table; a coding with no system is tried against every
table.  Then display and free text.  A code that nothing recognises is reported for review as
``<system>|<code>``, never guessed.  An interface team adding a local code adds a row here, and
both feeds learn it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM
from coding_core.model import Coding, Method, Quantity, Route

SNOMED, V2_0162, V2_0165, V3_ROUTE, NCIT = "SNOMED CT", "HL7 v2-0162", "HL7 v2-0165", "HL7 v3 RouteOfAdministration", "NCI Thesaurus"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"

# Every spelling of a code system -> (key, canonical URI).  Lookups are case-insensitive.
CODE_SYSTEMS: dict[str, tuple[str, str]] = {}
for _key, _uri, _aliases in (
    (SNOMED, "http://snomed.info/sct", ("urn:oid:2.16.840.1.113883.6.96", "SCT", "SNOMED", "SNOMEDCT", "SNM", "SNM3")),
    (V2_0162, "http://terminology.hl7.org/CodeSystem/v2-0162",
     ("urn:oid:2.16.840.1.113883.12.162", "http://hl7.org/fhir/v2/0162", "HL70162")),
    (V2_0165, "http://terminology.hl7.org/CodeSystem/v2-0165",
     ("urn:oid:2.16.840.1.113883.12.165", "http://hl7.org/fhir/v2/0165", "HL70165")),
    (V3_ROUTE, "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
     ("urn:oid:2.16.840.1.113883.5.112", "http://hl7.org/fhir/v3/RouteOfAdministration", "HL7V3ROUTE")),
    (NCIT, "http://ncithesaurus-stage.nci.nih.gov",
     ("urn:oid:2.16.840.1.113883.3.26.1.1", "http://ncimeta.nci.nih.gov", "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "NCIT", "NCI")),
    ("RxNorm", RXNORM_SYSTEM, ("urn:oid:2.16.840.1.113883.6.88", "http://www.nlm.nih.gov/research/umls/rxnorm/", "RXNORM", "RXN")),
    ("NDC", NDC_SYSTEM, ("urn:oid:2.16.840.1.113883.6.69", "NDC", "N0")),
    ("HCPCS", HCPCS_SYSTEM, ("urn:oid:2.16.840.1.113883.6.285", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
                             "HCPCS", "HPC")),
    ("CPT", CPT_SYSTEM, ("urn:oid:2.16.840.1.113883.6.12", "CPT", "CPT4", "C4")),
):
    for _spelling in (_uri, *_aliases):
        CODE_SYSTEMS[_spelling.lower()] = (_key, _uri)


def system_key(system: str | None) -> str | None:
    """The key of a recognised code system ('SNOMED CT', 'RxNorm', ...), else None."""
    if not system:
        return None
    hit = CODE_SYSTEMS.get(system.strip().lower())
    return hit[0] if hit else None


def canonical_system(system: str | None) -> str | None:
    """A recognised system's canonical URI (an OID or HL7 v2 name becomes the URI); others as sent."""
    if not system:
        return system
    hit = CODE_SYSTEMS.get(system.strip().lower())
    return hit[1] if hit else system


_IV, _IA, _SC, _IM, _PAR, _ORAL, _NP, _PROC, _REVIEW = (
    Route.IV, Route.INTRA_ARTERIAL, Route.SC, Route.IM, Route.OTHER, Route.ORAL, Route.NON_PARENTERAL, Route.PROCEDURE,
    Route.UNRECOGNISED)

# (system, code, display as published, route).  The display is documentation only.
ROUTE_ROWS: tuple[tuple[str, str, str, Route], ...] = (
    # SNOMED CT route codes (descendants of 284009009 "Route of administration value").
    (SNOMED, "47625008", "Intravenous route", _IV),
    (SNOMED, "255560000", "Intravenous", _IV),
    (SNOMED, "58100008", "Intra-arterial route", _IA),
    (SNOMED, "34206005", "Subcutaneous route", _SC),
    (SNOMED, "263887005", "Subcutaneous", _SC),
    (SNOMED, "78421000", "Intramuscular route", _IM),
    (SNOMED, "72607000", "Intrathecal route", _PAR),
    (SNOMED, "38239002", "Intraperitoneal route", _PAR),
    (SNOMED, "372464004", "Intradermal route", _PROC),
    (SNOMED, "12130007", "Intra-articular route", _PROC),
    (SNOMED, "60213007", "Intramedullary route", _PROC),
    (SNOMED, "37737002", "Intraluminal route", _PROC),
    (SNOMED, "62226000", "Intrauterine route", _PROC),
    (SNOMED, "26643006", "Oral route", _ORAL),
    (SNOMED, "37839007", "Sublingual route", _NP),
    (SNOMED, "54471007", "Buccal route", _NP),
    (SNOMED, "6064005", "Topical route", _NP),
    (SNOMED, "45890007", "Transdermal route", _NP),
    (SNOMED, "447694001", "Respiratory tract route", _NP),
    (SNOMED, "18679011000001101", "Inhalation", _NP),
    (SNOMED, "37161004", "Per rectum", _NP),
    (SNOMED, "16857009", "Per vagina", _NP),
    (SNOMED, "54485002", "Ophthalmic route", _NP),
    (SNOMED, "10547007", "Otic route", _NP),
    (SNOMED, "46713006", "Nasal route", _NP),
    (SNOMED, "127490009", "Gastrostomy route", _NP),
    (SNOMED, "127492001", "Nasogastric route", _NP),
    (SNOMED, "90028008", "Urethral route", _NP),
    # HL7 v2 table 0162, in full.
    (V2_0162, "AP", "Apply Externally", _NP),
    (V2_0162, "B", "Buccal", _NP),
    (V2_0162, "DT", "Dental", _NP),
    (V2_0162, "EP", "Epidural", _PROC),
    (V2_0162, "ET", "Endotrachial Tube", _NP),
    (V2_0162, "GTT", "Gastrostomy Tube", _NP),
    (V2_0162, "GU", "GU Irrigant", _NP),
    (V2_0162, "IA", "Intra-arterial", _IA),
    (V2_0162, "IB", "Intrabursal", _PROC),
    (V2_0162, "IC", "Intracardiac", _PROC),
    (V2_0162, "ICV", "Intracervical (uterus)", _PROC),
    (V2_0162, "ID", "Intradermal", _PROC),
    (V2_0162, "IH", "Inhalation", _NP),
    (V2_0162, "IHA", "Intrahepatic Artery", _IA),
    (V2_0162, "IM", "Intramuscular", _IM),
    (V2_0162, "IMR", "Immerse (Soak) Body Part", _NP),
    (V2_0162, "IN", "Intranasal", _NP),
    (V2_0162, "IO", "Intraocular", _PROC),
    (V2_0162, "IP", "Intraperitoneal", _PAR),
    (V2_0162, "IS", "Intrasynovial", _PROC),
    (V2_0162, "IT", "Intrathecal", _PAR),
    (V2_0162, "IU", "Intrauterine", _PROC),
    (V2_0162, "IV", "Intravenous", _IV),
    (V2_0162, "MM", "Mucous Membrane", _NP),
    (V2_0162, "MTH", "Mouth/Throat", _NP),
    (V2_0162, "NG", "Nasogastric", _NP),
    (V2_0162, "NP", "Nasal Prongs", _NP),
    (V2_0162, "NS", "Nasal", _NP),
    (V2_0162, "NT", "Nasotrachial Tube", _NP),
    (V2_0162, "OP", "Ophthalmic", _NP),
    (V2_0162, "OT", "Otic", _NP),
    (V2_0162, "OTH", "Other/Miscellaneous", _REVIEW),
    (V2_0162, "PF", "Perfusion", _REVIEW),
    (V2_0162, "PO", "Oral", _ORAL),
    (V2_0162, "PR", "Rectal", _NP),
    (V2_0162, "RM", "Rebreather Mask", _NP),
    (V2_0162, "SC", "Subcutaneous", _SC),
    (V2_0162, "SD", "Soaked Dressing", _NP),
    (V2_0162, "SL", "Sublingual", _NP),
    (V2_0162, "TD", "Transdermal", _NP),
    (V2_0162, "TL", "Translingual", _NP),
    (V2_0162, "TP", "Topical", _NP),
    (V2_0162, "TRA", "Tracheostomy", _NP),
    (V2_0162, "UR", "Urethral", _NP),
    (V2_0162, "VG", "Vaginal", _NP),
    (V2_0162, "VM", "Ventimask", _NP),
    (V2_0162, "WND", "Wound", _NP),
    # HL7 v3 RouteOfAdministration (FHIR R4 v3-RouteOfAdministration): the drug-administration ones.
    (V3_ROUTE, "IV", "Infusion, intravenous", _IV),
    (V3_ROUTE, "IVC", "Infusion, intravenous catheter", _IV),
    (V3_ROUTE, "IVCC", "Infusion, intravenous catheter, continuous", _IV),
    (V3_ROUTE, "IVCI", "Infusion, intravenous catheter, intermittent", _IV),
    (V3_ROUTE, "PCA", "Infusion, intravenous catheter, pca pump", _IV),
    (V3_ROUTE, "IVINJ", "Injection, intravenous", _IV),
    (V3_ROUTE, "IVINJBOL", "Injection, intravenous, bolus", _IV),
    (V3_ROUTE, "IVPUSH", "Injection, intravenous, push", _IV),
    (V3_ROUTE, "IVRPUSH", "Injection, intravenous, rapid push", _IV),
    (V3_ROUTE, "IVSPUSH", "Injection, intravenous, slow push", _IV),
    (V3_ROUTE, "IVFLUSH", "Flush, intravenous catheter", _IV),
    (V3_ROUTE, "IA", "Infusion, intraarterial catheter", _IA),
    (V3_ROUTE, "IAINJ", "Injection, intraarterial", _IA),
    (V3_ROUTE, "IAINJP", "Injection, intraarterial, push", _IA),
    (V3_ROUTE, "IAINJSP", "Injection, intraarterial, slow push", _IA),
    (V3_ROUTE, "SQ", "Injection, subcutaneous", _SC),
    (V3_ROUTE, "SQINFUS", "Infusion, subcutaneous", _SC),
    (V3_ROUTE, "IM", "Injection, intramuscular", _IM),
    (V3_ROUTE, "IMD", "Injection, intramuscular, deep", _IM),
    (V3_ROUTE, "IMZ", "Injection, intramuscular, z track", _IM),
    (V3_ROUTE, "IT", "Infusion, intrathecal", _PAR),
    (V3_ROUTE, "ITINJ", "Injection, intrathecal", _PAR),
    (V3_ROUTE, "EPI", "Infusion, epidural", _PROC),
    (V3_ROUTE, "EPIDURINJ", "Injection, epidural", _PROC),
    (V3_ROUTE, "IDINJ", "Injection, intradermal", _PROC),
    (V3_ROUTE, "IPERINJ", "Injection, intraperitoneal", _PAR),
    (V3_ROUTE, "IOSSINJ", "Injection, intraosseous", _PAR),
    (V3_ROUTE, "IOSSC", "Infusion, intraosseous, continuous", _PAR),
    (V3_ROUTE, "IVESINJ", "Injection, intravesicle", _PROC),
    (V3_ROUTE, "IARTINJ", "Injection, intraarticular", _PROC),
    (V3_ROUTE, "PARENTINJ", "Injection, parenteral", _PAR),
    (V3_ROUTE, "PO", "Swallow, oral", _ORAL),
    (V3_ROUTE, "CHEW", "Chew, oral", _ORAL),
    (V3_ROUTE, "DISSOLVE", "Dissolve, oral", _ORAL),
    (V3_ROUTE, "SL", "Dissolve, sublingual", _NP),
    (V3_ROUTE, "BUC", "Topical application, buccal", _NP),
    (V3_ROUTE, "TOPICAL", "Topical", _NP),
    (V3_ROUTE, "SKIN", "Topical application, skin", _NP),
    (V3_ROUTE, "TRNSDERM", "Transdermal", _NP),
    (V3_ROUTE, "IPINHL", "Inhalation, respiratory", _NP),
    (V3_ROUTE, "NEB", "Inhalation, nebulization", _NP),
    (V3_ROUTE, "ORNEB", "Inhalation, nebulization, oral", _NP),
    (V3_ROUTE, "NASINHL", "Inhalation, nasal", _NP),
    (V3_ROUTE, "NASAL", "Topical application, nasal", _NP),
    (V3_ROUTE, "OPTHALTA", "Topical application, ophthalmic", _NP),
    (V3_ROUTE, "OT", "Instillation, otic", _NP),
    (V3_ROUTE, "PR", "Insertion, rectal", _NP),
    (V3_ROUTE, "VAGINSI", "Insertion, vaginal", _NP),
    (V3_ROUTE, "GT", "Instillation, gastrostomy tube", _NP),
    (V3_ROUTE, "NGT", "Instillation, nasogastric tube", _NP),
    # FDA route of administration (NCI Thesaurus codes; US C-CDA and US Core feeds).
    (NCIT, "C38276", "INTRAVENOUS", _IV),
    (NCIT, "C38222", "INTRA-ARTERIAL", _IA),
    (NCIT, "C38299", "SUBCUTANEOUS", _SC),
    (NCIT, "C28161", "INTRAMUSCULAR", _IM),
    (NCIT, "C38267", "INTRATHECAL", _PAR),
    (NCIT, "C38238", "INTRADERMAL", _PROC),
    (NCIT, "C38258", "INTRAPERITONEAL", _PAR),
    (NCIT, "C38243", "EPIDURAL", _PROC),
    (NCIT, "C38288", "ORAL", _ORAL),
    (NCIT, "C38300", "SUBLINGUAL", _NP),
    (NCIT, "C38193", "BUCCAL", _NP),
    (NCIT, "C38304", "TOPICAL", _NP),
    (NCIT, "C38305", "TRANSDERMAL", _NP),
    (NCIT, "C38216", "RESPIRATORY (INHALATION)", _NP),
    (NCIT, "C38295", "RECTAL", _NP),
    (NCIT, "C38287", "OPHTHALMIC", _NP),
    (NCIT, "C38192", "AURICULAR (OTIC)", _NP),
    (NCIT, "C38284", "NASAL", _NP),
)

_PUSH, _INF, _INJ, _FLUSH, _REFILL, _OTHER, _NOT_SAID = (Method.PUSH, Method.INFUSION, Method.INJECTION, Method.FLUSH,
                                                          Method.PUMP_REFILL, Method.OTHER, Method.UNKNOWN)

# (system, code, display as published, method).
METHOD_ROWS: tuple[tuple[str, str, str, Method], ...] = (
    # SNOMED CT dosing-instruction imperatives (the FHIR "SNOMED CT Administration Method Codes").
    (SNOMED, "420620005", "Push", _PUSH),
    (SNOMED, "422145002", "Inject", _INJ),
    (SNOMED, "417924000", "Apply", _OTHER),
    (SNOMED, "419747000", "Chew", _OTHER),
    (SNOMED, "420045007", "Suck", _OTHER),
    (SNOMED, "420360002", "Sniff", _OTHER),
    (SNOMED, "420606003", "Shampoo", _OTHER),
    (SNOMED, "421134003", "Inhale", _OTHER),
    (SNOMED, "421257003", "Insert", _OTHER),
    (SNOMED, "421298005", "Swish and swallow", _OTHER),
    (SNOMED, "421521009", "Swallow", _OTHER),
    (SNOMED, "421538008", "Instill", _OTHER),
    (SNOMED, "421682005", "Dissolve", _OTHER),
    (SNOMED, "421805007", "Swish", _OTHER),
    (SNOMED, "422152000", "Wash", _OTHER),
    (SNOMED, "422219000", "Sprinkle", _OTHER),
    # ... and their successors under 736665006 "Dose form administration method" (FHIR R5).
    (SNOMED, "740685003", "Inject", _INJ),
    (SNOMED, "764794000", "Infuse", _INF),
    (SNOMED, "738991002", "Apply", _OTHER),
    (SNOMED, "738992009", "Chew", _OTHER),
    (SNOMED, "738993004", "Insert", _OTHER),
    (SNOMED, "738994005", "Instill", _OTHER),
    (SNOMED, "738995006", "Swallow", _OTHER),
    (SNOMED, "738996007", "Spray", _OTHER),
    (SNOMED, "740666001", "Inhale", _OTHER),
    (SNOMED, "764498003", "Suck", _OTHER),
    (SNOMED, "782155003", "Rinse", _OTHER),
    (SNOMED, "782168006", "Gargle", _OTHER),
    (SNOMED, "785900008", "Rinse or wash", _OTHER),
    (SNOMED, "738990001", "Administer", _NOT_SAID),
    (SNOMED, "418283001", "Administer", _NOT_SAID),
    (SNOMED, "419385000", "Use", _NOT_SAID),
    (SNOMED, "419582001", "Give", _NOT_SAID),
    (SNOMED, "419652001", "Take", _NOT_SAID),
    # HL7 v2 table 0165, in full.
    (V2_0165, "CH", "Chew", _OTHER),
    (V2_0165, "DI", "Dissolve", _OTHER),
    (V2_0165, "DU", "Dust", _OTHER),
    (V2_0165, "IF", "Infiltrate", _INJ),
    (V2_0165, "IR", "Irrigate", _FLUSH),
    (V2_0165, "IS", "Insert", _OTHER),
    (V2_0165, "IVP", "IV Push", _PUSH),
    (V2_0165, "IVPB", "IV Piggyback", _INF),
    (V2_0165, "NB", "Nebulized", _OTHER),
    (V2_0165, "PF", "Perfuse", _INF),
    (V2_0165, "PT", "Paint", _OTHER),
    (V2_0165, "SH", "Shampoo", _OTHER),
    (V2_0165, "SO", "Soak", _OTHER),
    (V2_0165, "WA", "Wash", _OTHER),
    (V2_0165, "WI", "Wipe", _OTHER),
)

# HL7 v3 route codes name the technique too: used when no method is documented.
ROUTE_METHODS: dict[tuple[str, str], Method] = {
    (V3_ROUTE, "IV"): _INF, (V3_ROUTE, "IVC"): _INF, (V3_ROUTE, "IVCC"): _INF, (V3_ROUTE, "IVCI"): _INF, (V3_ROUTE, "PCA"): _INF,
    (V3_ROUTE, "IA"): _INF, (V3_ROUTE, "SQINFUS"): _INF, (V3_ROUTE, "IT"): _INF, (V3_ROUTE, "EPI"): _INF, (V3_ROUTE, "IOSSC"): _INF,
    (V3_ROUTE, "IVINJ"): _INJ, (V3_ROUTE, "IAINJ"): _INJ, (V3_ROUTE, "SQ"): _INJ, (V3_ROUTE, "IM"): _INJ, (V3_ROUTE, "IMD"): _INJ,
    (V3_ROUTE, "IMZ"): _INJ, (V3_ROUTE, "ITINJ"): _INJ, (V3_ROUTE, "IPERINJ"): _INJ, (V3_ROUTE, "IOSSINJ"): _INJ,
    (V3_ROUTE, "PARENTINJ"): _INJ,
    (V3_ROUTE, "IVINJBOL"): _PUSH, (V3_ROUTE, "IVPUSH"): _PUSH, (V3_ROUTE, "IVRPUSH"): _PUSH, (V3_ROUTE, "IVSPUSH"): _PUSH,
    (V3_ROUTE, "IAINJP"): _PUSH, (V3_ROUTE, "IAINJSP"): _PUSH,
    (V3_ROUTE, "IVFLUSH"): _FLUSH,
}

# Words (lower case) in display and free text.  A phrase is tried whole first, then word by word:
# the words found must all agree.
ROUTE_WORDS: dict[str, Route] = {
    "iv": _IV, "intravenous": _IV, "intravenously": _IV, "ivpb": _IV, "ivp": _IV, "piggyback": _IV, "intravenous route": _IV,
    "sc": _SC, "sq": _SC, "subq": _SC, "subcut": _SC, "subcutaneous": _SC, "subcutaneously": _SC,
    "im": _IM, "intramuscular": _IM, "intramuscularly": _IM,
    "ia": _IA, "intra-arterial": _IA, "intraarterial": _IA, "intra arterial": _IA,
    "it": _PAR, "intrathecal": _PAR, "ip": _PAR, "intraperitoneal": _PAR, "intraosseous": _PAR,
    "id": _PROC, "intradermal": _PROC, "epidural": _PROC, "intra-articular": _PROC, "intravesical": _PROC,
    "intraocular": _PROC, "intravitreal": _PROC,
    "po": _ORAL, "oral": _ORAL, "orally": _ORAL, "by mouth": _ORAL, "per os": _ORAL,
    "sl": _NP, "sublingual": _NP, "buccal": _NP, "topical": _NP, "topically": _NP, "transdermal": _NP,
    "inhalation": _NP, "inhaled": _NP, "nebulized": _NP, "nebulised": _NP, "rectal": _NP, "pr": _NP,
    "vaginal": _NP, "ophthalmic": _NP, "otic": _NP, "nasal": _NP, "intranasal": _NP,
    "nasogastric": _NP, "gastrostomy": _NP, "enteral": _NP,
}
METHOD_WORDS: dict[str, Method] = {
    "push": _PUSH, "iv push": _PUSH, "ivp": _PUSH, "bolus": _PUSH,
    "infusion": _INF, "infuse": _INF, "infused": _INF, "ivpb": _INF, "piggyback": _INF, "drip": _INF,
    "perfuse": _INF, "continuous": _INF,
    "inject": _INJ, "injection": _INJ, "injected": _INJ,
    "flush": _FLUSH, "line flush": _FLUSH, "irrigate": _FLUSH, "irrigation": _FLUSH,
    "pump refill": _REFILL, "refill": _REFILL,
    "chew": _OTHER, "swallow": _OTHER, "inhale": _OTHER, "apply": _OTHER,
    "administer": _NOT_SAID, "give": _NOT_SAID,
}


def _index(rows: Iterable[tuple[str, str, str, object]]) -> dict[tuple[str, str], object]:
    index: dict[tuple[str, str], object] = {}
    for system, code, _display, value in rows:
        key = (system, code.lower())
        if key in index:
            raise ValueError(f"vocabulary row {system}|{code} appears twice")
        index[key] = value
    return index


ROUTES = _index(ROUTE_ROWS)
METHODS = _index(METHOD_ROWS)
_ROUTE_SYSTEMS = (V2_0162, V3_ROUTE, SNOMED, NCIT)  # tried in this order for a coding with no system
_METHOD_SYSTEMS = (V2_0165, SNOMED)
_PARENTHETICAL = re.compile(r"\([^)]*\)")
_WORD = re.compile(r"[a-z][a-z-]*")


@dataclass(frozen=True, slots=True)
class Found:
    """What a lookup found: the value, and for a code nothing knows, how to name it for review."""

    value: object | None
    unrecognised: str | None = None


def _words(text: str | None, table: dict[str, object]) -> object | None:
    if not text:
        return None
    phrase = " ".join(_PARENTHETICAL.sub(" ", text.lower()).replace(",", " ").split())
    for candidate in (phrase, phrase.removesuffix(" route"), phrase.removeprefix("route ")):
        if candidate in table:
            return table[candidate]
    # Word by word, abbreviations of two letters ("it", "po", "iv") only as the whole phrase:
    # inside a sentence they are ordinary words ("give it by mouth").
    found = {table[w] for w in _WORD.findall(phrase) if len(w) > 2 and w in table}
    found |= {value for words, value in table.items() if " " in words and f" {words} " in f" {phrase} "}
    return found.pop() if len(found) == 1 else None


def lookup(table: dict[tuple[str, str], object], words: dict[str, object], systems: tuple[str, ...],
           codings: Iterable[tuple[str | None, str | None, str | None]], text: str | None,
           default_system: str | None = None) -> Found:
    """(system, code, display) codings and a free text -> a table value.

    Order: a code in its own system's table; a code with no system (or ``default_system``, HL7
    v2's table of the field) in each table; display words; text words.  A code was sent and
    nothing matched: ``Found(None, "<system>|<code>")``."""
    codings = list(codings)
    for system, code, _ in codings:
        if not code:
            continue
        key = system_key(system) if system else default_system
        if key is not None:
            hit = table.get((key, code.strip().lower()))
            if hit is not None:
                return Found(hit)
        elif not system:
            for s in systems:
                hit = table.get((s, code.strip().lower()))
                if hit is not None:
                    return Found(hit)
    for _, code, display in codings:
        hit = _words(display, words)
        if hit is None and code and not any(c.isdigit() for c in code):
            hit = _words(code, words)  # a local code spelled as a word ("IVPB", "Intravenous")
        if hit is not None:
            return Found(hit)
    hit = _words(text, words)
    if hit is not None:
        return Found(hit)
    return Found(None, _first(codings, default_system) or ("free text only" if text else None))


def route_of(codings: Iterable[tuple[str | None, str | None, str | None]], text: str | None,
             default_system: str | None = None) -> tuple[Route, str | None]:
    """(route, what to review): UNKNOWN when nothing was documented."""
    codings = list(codings)
    found = lookup(ROUTES, ROUTE_WORDS, _ROUTE_SYSTEMS, codings, text, default_system)
    if found.value is Route.UNRECOGNISED:  # a row that says "review" (HL7 0162 OTH, PF)
        return Route.UNRECOGNISED, "route " + (_first(codings, default_system) or "free text only")
    if found.value is not None:
        return found.value, None  # type: ignore[return-value]
    if found.unrecognised is None:
        return Route.UNKNOWN, None
    return Route.UNRECOGNISED, "route " + found.unrecognised


def method_of(codings: Iterable[tuple[str | None, str | None, str | None]], text: str | None,
              default_system: str | None = None) -> tuple[Method, str | None]:
    """(method, what to review).  Free text that names no technique is "not said" (UNKNOWN)."""
    codings = list(codings)
    found = lookup(METHODS, METHOD_WORDS, _METHOD_SYSTEMS, codings, text, default_system)
    if found.value is not None:
        return found.value, None  # type: ignore[return-value]
    if found.unrecognised is None or found.unrecognised == "free text only":
        return Method.UNKNOWN, None
    return Method.UNRECOGNISED, "method " + found.unrecognised


def implied_method(codings: Iterable[tuple[str | None, str | None, str | None]]) -> Method:
    """The technique a route code names (HL7 v3 "IVPUSH", "SQINFUS", ...), else UNKNOWN."""
    for system, code, _ in codings:
        key = system_key(system)
        if key is not None and code:
            hit = ROUTE_METHODS.get((key, code.strip().upper()))
            if hit is not None:
                return hit
    return Method.UNKNOWN


_CODE_SHAPE = re.compile(r"[A-Za-z0-9._:-]{1,40}")
_SYSTEM_SHAPE = re.compile(r"[A-Za-z0-9._:/#-]{1,200}")


def _named(system: str | None, code: str) -> str:
    """'<system>|<code>' for review, showing only what is shaped like a system and a code:
    a feed that puts free text in a coded element has it withheld (it may be PHI)."""
    system = system if system and _SYSTEM_SHAPE.fullmatch(system) else ("(system not shown)" if system else "no system")
    code = code if _CODE_SHAPE.fullmatch(code) else "(code not shown)"
    return f"{system}|{code}"


def _first(codings: Iterable[tuple[str | None, str | None, str | None]], default_system: str | None) -> str | None:
    """The first code sent, named for review ('<system>|<code>'); None when no code was sent."""
    for system, code, _ in codings:
        if code:
            return _named(canonical_system(system) or default_system, code.strip())
    return None


# --- quantities: volumes, rates, durations -------------------------------------------------

VOLUME_UNITS: dict[str, Decimal] = {"ml": Decimal(1), "cc": Decimal(1), "l": Decimal(1000)}
# Time units -> how many of them make an hour (UCUM and common spellings).
PER_HOUR: dict[str, Decimal] = {
    "h": Decimal(1), "hr": Decimal(1), "hour": Decimal(1), "hours": Decimal(1),
    "min": Decimal(60), "mins": Decimal(60), "minute": Decimal(60), "minutes": Decimal(60),
    "s": Decimal(3600), "sec": Decimal(3600), "d": Decimal(1) / Decimal(24), "day": Decimal(1) / Decimal(24),
}
MINUTES_PER: dict[str, Decimal] = {unit: Decimal(60) / per for unit, per in PER_HOUR.items()}
# The numerator of a drug rate: mass, units, milliequivalents.
DRUG_AMOUNT_UNITS = frozenset({"g", "mg", "mcg", "ug", "µg", "ng", "u", "unit", "units", "iu", "[iu]", "[u]", "meq", "mmol", "mol"})
WEIGHT_UNITS = frozenset({"kg", "g", "m2", "[m2]"})


@dataclass(frozen=True, slots=True)
class Rate:
    """A documented rate, read: a volume per hour, a drug rate as text, or neither (with why)."""

    ml_per_h: Decimal | None = None
    drug_rate: str | None = None
    ignored: str | None = None  # why the rate was not usable (a warning for the source)


def _clean_unit(unit: str) -> str:
    return unit.replace(" ", "").lower().replace("{", "").replace("}", "")


def read_rate(value: Decimal | None, unit: str | None, where: str) -> Rate:
    """``value`` in ``unit`` ('mL/h', 'mg/min', 'mcg/kg/min', 'units/h', ...) -> a :class:`Rate`.

    A volume per time feeds the hydration and stop-time arithmetic; a drug per time is kept as
    text; a bare duration or an unknown unit is ignored with a reason.  Never raises."""
    if value is None:
        return Rate()
    cleaned = _clean_unit(unit or "")
    parts = cleaned.split("/")
    if len(parts) == 1:
        if cleaned in PER_HOUR:
            return Rate(ignored=f"{where} is a duration, not a rate; ignored")
        return Rate(ignored=f"{where} unit is not a rate per time; ignored")
    amount, per = parts[0], parts[-1]
    if per not in PER_HOUR:
        return Rate(ignored=f"{where} unit is not a rate per time; ignored")
    if len(parts) == 2 and amount in VOLUME_UNITS:
        return Rate(ml_per_h=value * VOLUME_UNITS[amount] * PER_HOUR[per])
    if amount in DRUG_AMOUNT_UNITS and all(p in WEIGHT_UNITS for p in parts[1:-1]) and len(parts) <= 3:
        return Rate(drug_rate=f"{format(value.normalize(), 'f')} {unit.strip() if unit else cleaned}")
    return Rate(ignored=f"{where} unit is not a rate per time; ignored")


def duration_minutes(value: Decimal | None, unit: str | None) -> int | None:
    """A documented duration in whole minutes (UCUM min, h, s, d), else None."""
    if value is None or value <= 0:
        return None
    factor = MINUTES_PER.get(_clean_unit(unit or ""))
    if factor is None:
        return None
    minutes = value * factor
    return int(minutes) if minutes < 100_000 else None


def volume_ml(q: Quantity | None) -> Decimal | None:
    if q is None:
        return None
    factor = VOLUME_UNITS.get(q.unit.strip().lower())
    return q.value * factor if factor is not None else None


# --- access, KVO, single times, NDC -----------------------------------------------------------

# Words in a device display or site text that name the kind of vascular access.
ACCESS_TYPE_WORDS: tuple[tuple[str, str], ...] = (
    ("picc", "picc"), ("port", "port"), ("mediport", "port"), ("port-a-cath", "port"),
    ("central", "central"), ("cvc", "central"), ("hickman", "central"),
    ("peripheral", "peripheral"), ("piv", "peripheral"),
)
KVO_WORDS = re.compile(r"\b(kvo|tko|keep[ -]vein[ -]open|to keep open)\b", re.IGNORECASE)


def access_type(explicit: str | None, *texts: str | None) -> str | None:
    if explicit:
        return explicit.lower()
    for text in texts:
        if not text:
            continue
        words = re.findall(r"[a-z][a-z-]*", text.lower())
        for word, kind in ACCESS_TYPE_WORDS:
            if word in words:
                return kind
    return None


def end_of_single_time(start: datetime | None, method: Method, route: Route, duration_documented: bool = False) -> datetime | None:
    """A single documented time is a complete record of a push or an injection (IV, IA, SC or
    IM); for anything else, or when an infusion duration is documented, it is a start without
    a stop (the coding core derives the stop from the duration, or warns)."""
    if method is Method.PUSH:
        return start
    if duration_documented:
        return None
    if method is Method.INJECTION:
        return start
    if route in (Route.SC, Route.IM) and method is not Method.INFUSION:
        return start
    return None


def says_kvo(*texts: str | None) -> bool:
    """Does any free text document a keep-vein-open / to-keep-open rate?"""
    return any(KVO_WORDS.search(t) for t in texts if t)


def ndc_of(codings: tuple[Coding, ...]) -> str | None:
    return next((c.code for c in codings if c.system == NDC_SYSTEM), None)


# --- the vocabulary as documentation (docs/vocabulary.md is this, generated) -------------------

_ROUTE_MEANING = {
    Route.IV: "IV", Route.INTRA_ARTERIAL: "intra-arterial", Route.SC: "subcutaneous", Route.IM: "intramuscular",
    Route.OTHER: "other parenteral (unlisted code, review)", Route.PROCEDURE: "within a procedure: no administration line, drug line", Route.ORAL: "oral: no service; oral HCPCS drug line only",
    Route.NON_PARENTERAL: "not a drug administration service", Route.UNRECOGNISED: "needs review: no line",
}
_METHOD_MEANING = {
    Method.PUSH: "push", Method.INFUSION: "infusion", Method.INJECTION: "injection (IV: push or infusion by time)",
    Method.FLUSH: "flush", Method.PUMP_REFILL: "pump refill", Method.OTHER: "another technique (by time, as no method)",
    Method.UNKNOWN: "not said (by time)",
}


def markdown() -> str:
    """docs/vocabulary.md: every route and method row, and the words read in text."""
    out = ["# Vocabulary: routes and methods", "",
           "Generated from `mapping/vocabulary.py` by `python -m mapping.vocabulary > docs/vocabulary.md`;",
           "`tests/test_vocabulary.py` fails when this page and the tables disagree. Both feeds read the same",
           "tables. A code is looked up in its own system; a code with no system (HL7 v2: the field's table",
           "when CWE.3 is empty) in each table; then display and free text words. A code nothing recognises",
           "makes the administration `needs-review` (named by system and code only) and gives it no line.", "",
           "Code systems are recognised by canonical URI, OID and HL7 v2 name:", "",
           "| system | also recognised as |", "|---|---|"]
    spellings: dict[str, list[str]] = {}
    for spelling, (key, uri) in CODE_SYSTEMS.items():
        if spelling != uri.lower():
            spellings.setdefault(f"{key} `{uri}`", []).append(f"`{spelling}`")
    out += [f"| {k} | {', '.join(v)} |" for k, v in spellings.items()]
    for title, rows, meaning in (("Routes", ROUTE_ROWS, _ROUTE_MEANING), ("Methods", METHOD_ROWS, _METHOD_MEANING)):
        out += ["", f"## {title}", "", "| system | code | display | read as |", "|---|---|---|---|"]
        out += [f"| {system} | `{code}` | {display} | {meaning[value]} |" for system, code, display, value in rows]
    out += ["", "## Words in display and free text", "",
            "A phrase is tried whole, then word by word; the words found must agree.", "",
            "| read as | words |", "|---|---|"]
    for words, meaning in ((ROUTE_WORDS, _ROUTE_MEANING), (METHOD_WORDS, _METHOD_MEANING)):
        grouped: dict[str, list[str]] = {}
        for word, value in words.items():
            grouped.setdefault(meaning[value], []).append(f"`{word}`")
        out += [f"| {m} | {', '.join(ws)} |" for m, ws in grouped.items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
