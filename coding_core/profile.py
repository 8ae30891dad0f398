"""Payer/site profile: every deviation from the default CMS facility rules is a named setting,
and so is what the site's billing needs on the charges (revenue codes, chargemaster, identifier
systems, cost centres, the FHIR server's base URL, the enterer).  docs/configuration.md lists them."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from coding_core.model import Setting
from coding_core.ndc import NdcUnit, ndc_keys

REVENUE_KEY = re.compile(r"[A-Z0-9]\d{4}(-[A-Z0-9]\d{4})?")  # a CPT/HCPCS code, or a range of them


class FormularyOverride(BaseModel):
    """A site-specific formulary entry: replaces the entry with the same HCPCS code, or adds one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hcpcs: str  # the entry replaced (or added)
    name: str | None = None  # generic name
    drug_class: str | None = None  # chemo, chemo-hormonal, therapeutic, hydration, blood, contrast
    billing_unit_value: Decimal | None = None  # HCPCS billing unit amount (10 for "10 mg")
    billing_unit: str | None = None  # its measure: mg, mcg, g, mL, mEq, units, each
    single_dose: bool | None = None  # single-dose container (JW/JZ apply)
    rxnorm: tuple[str, ...] = ()  # RxNorm codes added to the entry's
    ndc: tuple[str, ...] = ()  # NDCs added to the entry's
    local_codes: tuple[str, ...] = ()  # the site's own drug codes (any system not HCPCS/NDC/RxNorm)
    synonyms: tuple[str, ...] = ()  # further names (brand names) matched as written
    ndc_unit: NdcUnit | None = None  # how its NDCs are counted on a claim (replaces the entry's)
    ndc_units: dict[str, NdcUnit] = Field(default_factory=dict)  # per NDC, added to the entry's

    @field_validator("ndc_units")
    @classmethod
    def _ndc_keys(cls, value: dict[str, NdcUnit]) -> dict[str, NdcUnit]:
        return ndc_keys(value)


class CdmItem(BaseModel):
    """One chargemaster row: the charge a CPT/HCPCS code (with these modifiers) posts to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Z0-9]\d{4}$")
    modifiers: tuple[Annotated[str, Field(pattern=r"^[A-Z0-9]{2}$")], ...] = ()  # the row serves lines carrying all of these (the most matching row wins)
    cdm_code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")
    description: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")  # no control characters
    revenue_code: str | None = Field(default=None, pattern=r"^\d{4}$")
    unit_price: Decimal | None = Field(default=None, ge=0, decimal_places=2)


class Chargemaster(BaseModel):
    """The site's chargemaster (CDM): ``file`` (CSV, read by ``load_profile`` relative to the
    profile) or ``items`` inline.  Each line gets its CDM code as a further coding (``system``)
    and the row's revenue code; a priced row is a ChargeItemDefinition
    (``<definition_base>/ChargeItemDefinition/cdm-<code>``) the line names in ``definitionCanonical``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str = Field(pattern=r"^(https?://|urn:)\S+$")
    version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.\-]{1,64}$")
    file: str | None = None  # CSV (code,modifiers,cdm_code,description,revenue_code,unit_price), relative to the profile
    items: tuple[CdmItem, ...] = ()  # the rows inline (Helm values), instead of file
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    # Where the ChargeItemDefinitions live (default: the profile's fhir_base_url).
    definition_base: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+[^/\s?#]$")
    _by_code: dict[str, list[CdmItem]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _one_row_each(self) -> Chargemaster:
        by_code: dict[str, list[CdmItem]] = {}
        for i, item in enumerate(self.items):
            rows = by_code.setdefault(item.code, [])
            if any(set(r.modifiers) == set(item.modifiers) for r in rows):
                raise ValueError(f"items[{i}] (row {i + 2} of a file): a second row for its code with the same modifiers")
            rows.append(item)
        self._by_code = by_code
        return self

    def row(self, code: str, modifiers: tuple[str, ...]) -> CdmItem | None:
        """The row whose modifiers are all on the line, the most of them first (a 340B line
        J9312 TB JW takes the JW row, not the plain one); on a tie, the first in the file."""
        line = set(modifiers)
        best: CdmItem | None = None
        # through pydantic's private slot: reading ``self._by_code`` by name costs ~1.9 µs, once per line
        for r in self.__pydantic_private__["_by_code"].get(code, ()):
            if set(r.modifiers) <= line and (best is None or len(r.modifiers) > len(best.modifiers)):
                best = r
        return best


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default-cms-opps"  # recorded on every revision (meta.tag) and in logs
    # facility (hospital outpatient, OPPS) or professional (physician office) coding rules.
    setting: Setting = Setting.FACILITY
    # Modifier on a second vascular access site's initial service.
    distinct_service_modifier: Literal["59", "XS", "XU"] = "59"
    # Medicare single-dose container policy (JW waste / JZ no waste), since July 2023.
    jw_jz: bool = True
    # Time zone of the site: dates of service are local dates.
    timezone: str = "America/New_York"
    # A hydration rate at or below this is keep-vein-open, not hydration.
    kvo_max_rate_ml_per_h: Decimal = Decimal(30)
    # Use a stop time derived from a documented infusion duration or volume / rate (always flagged
    # for review).  False: only hydration's volume / rate, as CMS describes it.
    derive_stop_time: bool = True
    # Hydration within this many minutes before/after a transfusion is not billable.
    transfusion_window_minutes: int = 60
    # Drug-line modifiers by route (e.g. {"iv": "JA", "sc": "JB"}).
    route_drug_modifiers: dict[str, str] = Field(default_factory=dict)
    drug_line_modifiers: tuple[str, ...] = ()  # on every drug line (340B: TB)
    # Site formulary entries: each replaces the bundled entry with its HCPCS code (codes and
    # names are added to the entry's), or adds a drug.
    formulary_overrides: tuple[FormularyOverride, ...] = ()
    # UB-04 revenue codes by CPT/HCPCS code or range ("96360-96379", "J9312"): these win over
    # the defaults of coding_core/revenue_codes.py.
    revenue_codes: dict[str, str] = Field(default_factory=dict)
    # Publish lines that carry a review flag as "planned" (awaiting review), not "billable".
    hold_flagged_lines: bool = False
    # The FHIR server's base URL: Bundle entries' fullUrl is then <base>/ChargeItem/<id>
    # (else a name-based urn:uuid from the line id).
    fhir_base_url: str | None = None
    chargemaster: Chargemaster | None = None  # the site's CDM (table below); lines without a row are flagged no-cdm-item
    # HL7 v2 assigning authorities (PID-3.4, PV1-19.4, PID-18.4, XCN-9, ORC-3.2) -> identifier
    # system URIs, keyed "<resource type>:<authority>" (Patient:GENHOSP), "<authority>" or "*";
    # an authority not listed becomes urn:infusion-charges:assigning-authority:<it>.
    identifier_systems: dict[str, str] = Field(default_factory=dict)
    # Performing location code (FHIR Location id, HL7 PV1-3.1) -> cost centre code, published as
    # ChargeItem.costCenter (an Organization by identifier in cost_center_system).  With any
    # listed, a line whose location is not is flagged no-cost-center.
    cost_centers: dict[str, str] = Field(default_factory=dict)
    cost_center_system: str = "urn:infusion-charges:cost-center"  # the identifier system of cost centre codes
    # ChargeItem.enterer: a literal reference (e.g. Device/infusion-charges); else display only.
    enterer: str | None = None
    # Flag drug lines sent without an NDC (no-ndc): Medicaid and 340B claims need one.
    require_ndc: bool = False

    @field_validator("revenue_codes")
    @classmethod
    def _revenue_codes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, code in value.items():
            if not REVENUE_KEY.fullmatch(key):
                raise ValueError("revenue_codes keys are a CPT/HCPCS code or a range of them (96360-96379)")
            if not re.fullmatch(r"\d{4}", code):
                raise ValueError("revenue codes are four digits (0260)")
        return value

    @field_validator("identifier_systems")
    @classmethod
    def _identifier_systems(cls, value: dict[str, str]) -> dict[str, str]:
        for uri in value.values():
            if not re.fullmatch(r"(https?://|urn:)\S+", uri):
                raise ValueError("identifier_systems values are URIs (http(s):// or urn:)")
        return value

    @model_validator(mode="after")
    def _priced_rows_need_a_base(self) -> Profile:
        cdm = self.chargemaster
        if cdm is not None and any(i.unit_price is not None for i in cdm.items):
            if not (cdm.definition_base or self.fhir_base_url):
                raise ValueError("chargemaster: priced rows are ChargeItemDefinitions: give chargemaster.definition_base or fhir_base_url")
            if cdm.version is None:
                raise ValueError("chargemaster: priced rows need chargemaster.version (each version's prices stay resolvable)")
        return self

    @field_validator("fhir_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s?#]+[^/\s?#]", value):
            raise ValueError("fhir_base_url is an http(s) URL without a trailing slash, query or fragment")
        return value
