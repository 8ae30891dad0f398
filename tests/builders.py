"""Terse builders for coding-core tests: an administration reads like a line of a MAR."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from coding_core.engine import code_encounter
from coding_core.formulary import RouteProduct, HCPCS_SYSTEM, Formulary, FormularyEntry
from coding_core.model import (
    AdministrationEvent,
    AdminStatus,
    CodingResult,
    Coding,
    EncounterClass,
    EncounterInfo,
    Method,
    PumpType,
    Quantity,
    Route,
    Setting,
)
from coding_core.profile import Profile

TZ = ZoneInfo("America/New_York")
DAY1 = date(2026, 3, 2)

# A small test formulary: one drug per behaviour the rules care about.
DRUGS = {
    # code: (name, class, billing unit value, unit, single dose)
    "J9312": ("rituximab", "chemo", 10, "mg", True),
    "J9045": ("carboplatin", "chemo", 50, "mg", True),
    "J9267": ("paclitaxel", "chemo", 1, "mg", True),
    "J9190": ("fluorouracil", "chemo", 500, "mg", False),
    "J9217": ("leuprolide", "chemo-hormonal", "7.5", "mg", False),
    "J9041": ("bortezomib", "chemo", "0.1", "mg", True),
    "J1745": ("infliximab", "chemo", 10, "mg", True),
    "J2405": ("ondansetron", "therapeutic", 1, "mg", False),
    "J1100": ("dexamethasone", "therapeutic", 1, "mg", False),
    "J1200": ("diphenhydramine", "therapeutic", 50, "mg", False),
    "J3370": ("vancomycin", "therapeutic", 500, "mg", False),
    "J0696": ("ceftriaxone", "therapeutic", 250, "mg", False),
    "J3480": ("potassium chloride", "therapeutic", 2, "mEq", False),
    "J2270": ("morphine", "therapeutic", 10, "mg", False),
    "J7030": ("normal saline 1000 cc", "hydration", 1000, "mL", False),
    "J7120": ("ringers lactate", "hydration", 1000, "mL", False),
    "P9016": ("red blood cells", "blood", 1, "each", False),
    "Q9967": ("low osmolar contrast", "contrast", 1, "mL", False),
}
# code: the drug's oral HCPCS code (billing unit value, unit, payer condition)
ORAL = {
    "J2405": RouteProduct(hcpcs="Q0162", billing_unit_value=Decimal(1), billing_unit="mg", note="is billable only as a substitute for an IV anti-emetic",
                          requires_chemo=True),
    "J1100": RouteProduct(hcpcs="J8540", billing_unit_value=Decimal("0.25"), billing_unit="mg"),
}
FORMULARY = Formulary(
    "test",
    [
        FormularyEntry(hcpcs=code, name=n, drug_class=cls, billing_unit_value=Decimal(str(bu)), billing_unit=u, single_dose=sd,
                       routes={"oral": ORAL[code]} if code in ORAL else {})
        for code, (n, cls, bu, u, sd) in DRUGS.items()
    ],
)
CHEMO, CHEMO2, HORMONAL = "J9312", "J9045", "J9217"
THER, THER2, THER3 = "J2405", "J1100", "J1200"
NS, LR = "J7030", "J7120"
# codes of the IV initial services
INITIAL_CODES = {"96360", "96365", "96374", "96409", "96413"}


def at(hhmm: str, day: int = 0, base: date = DAY1) -> datetime:
    """Local wall-clock time on DAY1 + day, in the site time zone."""
    h, m = (int(x) for x in hhmm.split(":"))
    d = base + timedelta(days=day)
    return datetime(d.year, d.month, d.day, h, m, tzinfo=TZ)


_counter = iter(range(1, 10**9))


def adm(
    drug: str | None,
    start: str | datetime | None,
    end: str | datetime | None = None,
    *,
    id: str | None = None,
    day: int = 0,
    end_day: int | None = None,
    route: Route = Route.IV,
    method: Method = Method.UNKNOWN,
    site: str | None = "port-1",
    body_site: str | None = None,
    dose: tuple[float | str, str] | None = None,
    wasted: tuple[float | str, str] | None = None,
    volume: float | None = None,
    rate: float | None = None,
    status: AdminStatus = AdminStatus.COMPLETED,
    kvo: bool = False,
    part_of_procedure: bool = False,
    pump: PumpType | None = None,
    access_type: str | None = None,
    text: str | None = None,
    drug_rate: str | None = None,
    infusion_minutes: int | None = None,
    unrecognised: tuple[str, ...] = (),
) -> AdministrationEvent:
    s = at(start, day) if isinstance(start, str) else start
    e = at(end, day if end_day is None else end_day) if isinstance(end, str) else end
    if e is not None and s is not None and isinstance(end, str) and end_day is None and e < s:
        e = e + timedelta(days=1)  # "21:00-06:10" runs past midnight
    return AdministrationEvent(
        id=id or f"ma-{next(_counter)}",
        encounter_id="enc-1",
        patient_id="pat-1",
        status=status,
        drug_codings=(Coding(system=HCPCS_SYSTEM, code=drug),) if drug else (),
        drug_text=text,
        route=route,
        method=method,
        start=s,
        end=e,
        access_device=site,
        body_site=body_site,
        dose=Quantity(value=Decimal(str(dose[0])), unit=dose[1]) if dose else None,
        wasted=Quantity(value=Decimal(str(wasted[0])), unit=wasted[1]) if wasted else None,
        volume_ml=Decimal(str(volume)) if volume is not None else None,
        rate_ml_per_h=Decimal(str(rate)) if rate is not None else None,
        kvo=kvo,
        part_of_procedure=part_of_procedure,
        pump=pump,
        access_type=access_type,
        drug_rate=drug_rate,
        infusion_minutes=infusion_minutes,
        unrecognised=unrecognised,
    )


def run(
    *events: AdministrationEvent,
    setting: Setting = Setting.FACILITY,
    encounter_class: EncounterClass = EncounterClass.AMBULATORY,
    period_end: datetime | None = None,
    **profile_kw,
) -> CodingResult:
    profile = Profile(setting=setting, **profile_kw)
    encounter = EncounterInfo(id="enc-1", patient_id="pat-1", encounter_class=encounter_class, period_end=period_end)
    return code_encounter(encounter, list(events), FORMULARY, profile)


def cpt(result: CodingResult, with_dates: bool = False) -> list[tuple]:
    """The administration lines as sorted (code, units[, modifiers][, day offset]) tuples."""
    out = []
    for ln in result.lines:
        if ln.system != "CPT":
            continue
        row: tuple = (ln.code, ln.units)
        if ln.modifiers:
            row += (ln.modifiers,)
        if with_dates:
            row += ((ln.service_date - DAY1).days,)
        out.append(row)
    return sorted(out)


def drug(result: CodingResult) -> list[tuple]:
    return sorted((ln.code, ln.units, ln.modifiers) for ln in result.lines if ln.system == "HCPCS")


def warning_codes(result: CodingResult) -> set[str]:
    return {w.code for w in result.warnings}
