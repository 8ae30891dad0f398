"""Payer/site profile: every deviation from the default CMS facility rules is a named setting."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coding_core.model import Setting


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
