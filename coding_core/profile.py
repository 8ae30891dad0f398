"""Payer/site profile: every deviation from the default CMS facility rules is a named setting."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from coding_core.model import Setting

REVENUE_KEY = re.compile(r"[A-Z0-9]\d{4}(-[A-Z0-9]\d{4})?")  # a CPT/HCPCS code, or a range of them


class FormularyOverride(BaseModel):
    """A site-specific formulary entry: replaces the entry with the same HCPCS code, or adds one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hcpcs: str
    name: str | None = None
    drug_class: str | None = None
    billing_unit_value: Decimal | None = None
    billing_unit: str | None = None
    single_dose: bool | None = None
    rxnorm: tuple[str, ...] = ()
    ndc: tuple[str, ...] = ()
    local_codes: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


class CdmItem(BaseModel):
    """One chargemaster row: the charge a CPT/HCPCS code (with these modifiers) posts to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Z0-9]\d{4}$")
    modifiers: tuple[Annotated[str, Field(pattern=r"^[A-Z0-9]{2}$")], ...] = ()  # () matches the code with any modifiers no other row names
    cdm_code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")
    description: str = Field(min_length=1, max_length=200)
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
    file: str | None = None
    items: tuple[CdmItem, ...] = ()
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    # Where the ChargeItemDefinitions live (default: the profile's fhir_base_url).
    definition_base: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+[^/\s?#]$")
    _index: dict[tuple[str, tuple[str, ...]], CdmItem] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _one_row_each(self) -> Chargemaster:
        index: dict[tuple[str, tuple[str, ...]], CdmItem] = {}
        for i, item in enumerate(self.items):
            key = (item.code, tuple(sorted(item.modifiers)))
            if key in index:
                raise ValueError(f"items[{i}]: a second row for {item.code} with modifiers {list(key[1]) or 'none'}")
            index[key] = item
        self._index = index
        return self

    def row(self, code: str, modifiers: tuple[str, ...]) -> CdmItem | None:
        """The row for exactly these modifiers, else the code's row without modifiers."""
        return self._index.get((code, tuple(sorted(modifiers)))) or self._index.get((code, ()))


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default-cms-opps"
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
    # Drug-line modifiers by route (e.g. {"iv": "JA", "sc": "JB"}) and for every drug line (340B "TB").
    route_drug_modifiers: dict[str, str] = Field(default_factory=dict)
    drug_line_modifiers: tuple[str, ...] = ()
    formulary_overrides: tuple[FormularyOverride, ...] = ()
    # UB-04 revenue codes by CPT/HCPCS code or range ("96360-96379", "J9312"): these win over
    # the defaults of coding_core/revenue_codes.py.
    revenue_codes: dict[str, str] = Field(default_factory=dict)
    # Publish lines that carry a review flag as "planned" (awaiting review), not "billable".
    hold_flagged_lines: bool = False
    # The FHIR server's base URL: Bundle entries' fullUrl is then <base>/ChargeItem/<id>
    # (else a name-based urn:uuid from the line id).
    fhir_base_url: str | None = None
    chargemaster: Chargemaster | None = None
    # HL7 v2 assigning authorities (PID-3.4, PV1-19.4, PID-18.4, XCN-9, ORC-3.2) -> identifier
    # system URIs, keyed "<resource type>:<authority>" (Patient:GENHOSP), "<authority>" or "*";
    # an authority not listed becomes urn:infusion-charges:assigning-authority:<it>.
    identifier_systems: dict[str, str] = Field(default_factory=dict)
    # Performing location code (FHIR Location id, HL7 PV1-3.1) -> cost centre code, published as
    # ChargeItem.costCenter (an Organization by identifier in cost_center_system).  With any
    # listed, a line whose location is not is flagged no-cost-center.
    cost_centers: dict[str, str] = Field(default_factory=dict)
    cost_center_system: str = "urn:infusion-charges:cost-center"
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
        if cdm is not None and not (cdm.definition_base or self.fhir_base_url) and any(i.unit_price is not None for i in cdm.items):
            raise ValueError("chargemaster: priced rows are ChargeItemDefinitions: give chargemaster.definition_base or fhir_base_url")
        return self

    @field_validator("fhir_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s?#]+[^/\s?#]", value):
            raise ValueError("fhir_base_url is an http(s) URL without a trailing slash, query or fragment")
        return value
