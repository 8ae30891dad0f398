"""Payer/site profile: every deviation from the default CMS facility rules is a named setting."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("revenue_codes")
    @classmethod
    def _revenue_codes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, code in value.items():
            if not REVENUE_KEY.fullmatch(key):
                raise ValueError("revenue_codes keys are a CPT/HCPCS code or a range of them (96360-96379)")
            if not re.fullmatch(r"\d{4}", code):
                raise ValueError("revenue codes are four digits (0260)")
        return value

    @field_validator("fhir_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s?#]+[^/\s?#]", value):
            raise ValueError("fhir_base_url is an http(s) URL without a trailing slash, query or fragment")
        return value
