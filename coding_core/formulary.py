"""Drug formulary: HCPCS / RxNorm / NDC / local codes and names -> drug class and billing unit.

The data lives in a versioned data file (``coding_core/data/formulary.json``); this module
only validates and indexes it.  Reading the file is the caller's job (see
``mapping.reference_data``) so the coding core stays free of I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, field_validator

from coding_core.drug_names import reduced, same_salt
from coding_core.model import Coding, DrugClass
from coding_core.ndc import NdcUnit, ndc_keys, normalize_ndc, parse_ndc
from coding_core.profile import FormularyOverride

HCPCS_SYSTEM = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
LOCAL_SYSTEM_PREFIX = "urn:local:"  # local codes reach the formulary through ``local_codes``
_CODE_SYSTEMS = (HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM)


class RouteProduct(BaseModel):
    """The HCPCS code of a drug given by a non-parenteral route (oral antiemetics Q0162–Q0181,
    oral chemotherapy J8501–J8999): the only charge such an administration produces."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hcpcs: str  # the oral (or other route's) HCPCS code
    billing_unit_value: Decimal  # its billing unit amount
    billing_unit: str  # and measure
    note: str | None = None  # a payer condition worth a warning on the line
    # Billable only in an encounter with chemotherapy (Medicare: oral anti-emetics as a full
    # substitute for the IV anti-emetic at the time of chemotherapy).
    requires_chemo: bool = False
    ndc_unit: NdcUnit | None = None  # how its NDCs are counted (a tablet: UN, its strength)


class FormularyEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hcpcs: str  # the HCPCS Level II code billed for the drug
    name: str  # generic name (matched as written, and reduced to the ingredient)
    drug_class: DrugClass  # decides the administration codes (chemo 964xx, therapeutic/hydration 963xx)
    # HCPCS billing unit, e.g. 10 mg for J9312: units = ceil(dose / billing unit).
    billing_unit_value: Decimal
    billing_unit: str  # "mg", "mcg", "g", "mL", "mEq", "units", "each"
    single_dose: bool = False  # single-dose container: JW (discarded) / JZ (nothing discarded) lines
    rxnorm: tuple[str, ...] = ()  # RxNorm ingredient, clinical or branded drug codes
    ndc: tuple[str, ...] = ()  # NDCs, 11 digits 5-4-2 (other layouts are read too)
    local_codes: tuple[str, ...] = ()  # the site's own codes (any system not HCPCS/NDC/RxNorm)
    synonyms: tuple[str, ...] = ()  # further names (brand names) matched as written
    note: str | None = None  # why the entry is classified as it is
    # Route value ("oral") -> the drug's HCPCS code by that route.
    routes: dict[str, RouteProduct] = {}
    requires_chemo: bool = False  # set on the entry ``for_route`` makes of a RouteProduct that says so
    # The NDC quantity of a drug line: the entry's package unit, and per NDC (11 digits, 5-4-2)
    # where a package differs (a vial strength).  None: no NDC quantity, the line is flagged.
    ndc_unit: NdcUnit | None = None
    ndc_units: dict[str, NdcUnit] = {}  # per 11-digit NDC (5-4-2), where a package differs from ndc_unit

    @field_validator("ndc_units")
    @classmethod
    def _ndc_keys(cls, value: dict[str, NdcUnit]) -> dict[str, NdcUnit]:
        return ndc_keys(value)

    def ndc_unit_for(self, ndc: str | None) -> NdcUnit | None:
        """The package unit of this NDC (any layout with one 11-digit form), else the entry's."""
        return self.ndc_units.get(normalize_ndc(ndc), self.ndc_unit) if ndc else self.ndc_unit


def normalize_name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# How a drug was identified: by one of its codes, by its name or a synonym as written, or by a
# name reduced to its ingredient (coding_core/drug_names.py; flagged ``matched-by-name``).
BY_CODE, BY_NAME, BY_REDUCED_NAME = "code", "name", "reduced-name"


IDENTIFIED_CACHE = 50_000  # distinct drug codings remembered by Formulary.identify (then forgotten at once)
_SYSTEM_LABELS = {HCPCS_SYSTEM: "hcpcs", NDC_SYSTEM: "ndc", RXNORM_SYSTEM: "rxnorm"}


def system_label(codings: Sequence[Coding]) -> str:
    """The code system a drug was sent in, as a bounded label (never a code or a name)."""
    return _SYSTEM_LABELS.get(codings[0].system, "other") if codings else "text"


@dataclass(frozen=True)
class Identified:
    entry: FormularyEntry | None
    by: str | None = None  # BY_CODE, BY_NAME, BY_REDUCED_NAME; None when not identified


class Formulary:
    """Indexed, immutable formulary.  ``lookup`` never raises: unknown drugs return None."""

    def __init__(self, version: str, entries: Iterable[FormularyEntry]):
        self.version = version
        self.entries: tuple[FormularyEntry, ...] = tuple(entries)
        self._by_hcpcs: dict[str, FormularyEntry] = {}
        self._by_rxnorm: dict[str, FormularyEntry] = {}
        self._by_ndc: dict[str, FormularyEntry] = {}
        self._by_local: dict[str, FormularyEntry] = {}
        self._by_name: dict[str, FormularyEntry] = {}
        self._by_reduced: dict[str, FormularyEntry | None] = {}  # None: the reduced name fits two drugs
        self._by_route: dict[tuple[str, str], FormularyEntry | None] = {}
        self._identified: dict[tuple[tuple[tuple[str, str, str | None], ...], str | None], Identified] = {}
        for e in self.entries:
            self._by_hcpcs[e.hcpcs.upper()] = e
            for c in e.rxnorm:
                self._by_rxnorm[c] = e
            for c in e.ndc:
                self._by_ndc[normalize_ndc(c)] = e
            for c in e.local_codes:
                self._by_local[c.upper()] = e
            for n in (e.name, *e.synonyms):
                self._by_name[normalize_name(n)] = e
            # The generic name reduced ("dexamethasone sodium phosphate" -> "dexamethasone"); a
            # synonym only where reducing leaves it whole: "Emend IV" says IV to tell it from oral Emend.
            # Not fluids: their concentration and volume are what they are (5% or 50% dextrose).
            keys = [] if e.drug_class is DrugClass.HYDRATION else [
                *reduced(e.name), *(k for n in e.synonyms for k in reduced(n) if k == normalize_name(n))]
            for key in dict.fromkeys(keys):
                other = self._by_reduced.setdefault(key, e)
                if other is not None and other.hcpcs != e.hcpcs:
                    self._by_reduced[key] = None

    @classmethod
    def from_data(cls, data: dict) -> Formulary:
        """Build from the parsed data file: ``{"version": ..., "drugs": [...]}``."""
        return cls(str(data["version"]), (FormularyEntry.model_validate(d) for d in data["drugs"]))

    def with_overrides(self, overrides: Sequence[FormularyOverride]) -> Formulary:
        if not overrides:
            return self
        by_code = {e.hcpcs: e for e in self.entries}
        for o in overrides:
            base = by_code.get(o.hcpcs)
            patch = {k: v for k, v in o.model_dump().items() if v not in (None, (), {})}
            if base is None:
                by_code[o.hcpcs] = FormularyEntry.model_validate(patch)
            else:
                merged = base.model_dump()
                for k, v in patch.items():
                    if isinstance(v, tuple) and k != "hcpcs":
                        merged[k] = tuple(dict.fromkeys((*merged[k], *v)))
                    elif isinstance(v, dict):
                        merged[k] = {**merged[k], **v}
                    else:
                        merged[k] = v
                by_code[o.hcpcs] = FormularyEntry.model_validate(merged)
        return Formulary(f"{self.version}+site", by_code.values())

    def for_route(self, entry: FormularyEntry, route: str) -> FormularyEntry | None:
        """The entry billed for ``entry``'s drug given by a non-parenteral ``route``, or None."""
        key = (entry.hcpcs, route)
        if key not in self._by_route:
            product = entry.routes.get(route)
            self._by_route[key] = None if product is None else entry.model_copy(update={
                "hcpcs": product.hcpcs, "name": f"{entry.name} ({route})", "billing_unit_value": product.billing_unit_value,
                "billing_unit": product.billing_unit, "single_dose": False, "note": product.note, "routes": {},
                "requires_chemo": product.requires_chemo, "ndc_unit": product.ndc_unit, "ndc_units": {},
            })
        return self._by_route[key]

    def by_hcpcs(self, code: str) -> FormularyEntry | None:
        return self._by_hcpcs.get(code.upper())

    def lookup(self, codings: Sequence[Coding], text: str | None = None) -> FormularyEntry | None:
        return self.identify(codings, text).entry

    def identify(self, codings: Sequence[Coding], text: str | None = None) -> Identified:
        """Resolve a drug: HCPCS, then NDC, then RxNorm, then local codes, then its name as
        written, then its name reduced to the ingredient.  A feed names the same drugs over and
        over: answers are remembered (the formulary is immutable), up to IDENTIFIED_CACHE."""
        key = (tuple((c.system, c.code, c.display) for c in codings), text)
        hit = self._identified.get(key)
        if hit is None:
            if len(self._identified) >= IDENTIFIED_CACHE:
                self._identified.clear()
            hit = self._identified[key] = self._identify(codings, text)
        return hit

    def _identify(self, codings: Sequence[Coding], text: str | None) -> Identified:
        if len(codings) == 1:  # the usual case: one HCPCS code (a miss falls through to the full search)
            only = codings[0]
            if only.system == HCPCS_SYSTEM:
                hit = self._by_hcpcs.get(only.code.upper())
                if hit is not None:
                    return Identified(hit, BY_CODE)
        hits = self._code_hits(codings)
        if hits:
            # Codes naming a fluid and a drug are an admixture (KCl in NS, a drug in a bag):
            # the drug, per the coding rules: a fluid with a drug added is not hydration.
            drug = next((e for e in hits if e.drug_class is not DrugClass.HYDRATION), hits[0])
            return Identified(drug, BY_CODE)
        names = [c.display for c in codings if c.display]
        if text:
            names.insert(0, text)
        for n in names:
            hit = self._by_name.get(normalize_name(n))
            if hit is not None:
                return Identified(hit, BY_NAME)
        for n in names:
            for key in reduced(n):
                hit = self._by_reduced.get(key)
                if hit is not None and same_salt(n, hit.name):
                    return Identified(hit, BY_REDUCED_NAME)
        return Identified(None)

    def _code_hits(self, codings: Sequence[Coding]) -> list[FormularyEntry]:
        """The drugs the codes name, by precedence: HCPCS, NDC, RxNorm, local codes."""
        found: dict[str, FormularyEntry] = {}
        for system, find in ((HCPCS_SYSTEM, lambda c: self._by_hcpcs.get(c.upper())), (NDC_SYSTEM, self._ndc),
                             (RXNORM_SYSTEM, lambda c: self._by_rxnorm.get(c.strip())), (None, lambda c: self._by_local.get(c.upper()))):
            for c in codings:
                if (c.system == system if system else c.system not in _CODE_SYSTEMS) and (hit := find(c.code)) is not None:
                    found.setdefault(hit.hcpcs, hit)
        return list(found.values())

    def _ndc(self, code: str) -> FormularyEntry | None:
        """An NDC in any layout; ten digits without hyphens when exactly one reading is known."""
        hits = {e.hcpcs: e for c in parse_ndc(code).candidates if (e := self._by_ndc.get(c)) is not None}
        return next(iter(hits.values())) if len(hits) == 1 else None
