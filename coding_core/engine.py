"""The coding engine: an encounter's administration events -> coded lines with reasons.

Steps (each a pure function of its inputs):
1. ignore entered-in-error / not-done; classify every administration (``classify.py``);
2. group the IV hierarchy services into *scopes*: the vascular access site (facility: one
   initial service per site per encounter) or the date of service (professional: one initial
   per date);
3. in each scope pick the initial service by hierarchy, then give every other service its
   role — sequential, repeat push, concurrent, additional hour — and look its code up in
   ``rules.IV_CODES``;
4. code the services outside the hierarchy (``rules.STANDALONE_CODES``);
5. drop any add-on whose primary is missing (with a warning) and add the drug lines.
The result does not depend on the order of the input events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from operator import attrgetter
from zoneinfo import ZoneInfo

from coding_core.classify import Classified, classify_at
from coding_core.drug_lines import drug_lines
from coding_core.formulary import Formulary
from coding_core.model import (
    AdministrationEvent,
    CodedLine,
    CodingResult,
    CodingWarning,
    DrugClass,
    EncounterClass,
    EncounterInfo,
    Exclusion,
    Setting,
    coded_line,
    coding_result,
    coding_warning,
    exclusion,
)
from coding_core.profile import Profile
from coding_core.statuses import STATUS_RULES
from coding_core.rules import (
    ADDON_PRIMARIES,
    HIERARCHY_RANK,
    INFUSION_KINDS,
    IV_CODES,
    PUSH_KINDS,
    SC_INFUSION_ADDITIONAL_SITE,
    STANDALONE_ADDED_HOUR,
    STANDALONE_CODES,
    THRESHOLDS,
    CodeRule,
    Kind,
    Role,
)
from coding_core.timing import Interval, hour_starts, local_parts, overlap_minutes, subtract, to_utc, total_minutes, union, whole_minutes

_FAR_PAST = datetime(1900, 1, 1, tzinfo=timezone.utc)
UNSPECIFIED_SITE = "unspecified"
# Services whose explanation names the stop-time source and the rate of each administration.
_TIMED_KINDS = INFUSION_KINDS | {Kind.SC_INFUSION, Kind.IA_CHEMO_INFUSION, Kind.IA_CHEMO_PROLONGED_PUMP, Kind.CHEMO_PROLONGED_PUMP,
                                 Kind.UNLISTED_CHEMO, Kind.UNLISTED_THERAPEUTIC}


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class Service:
    """One billable unit of work on an access: a push, or an infusate (same drug, bags summed)."""

    __slots__ = ("kind", "drug_key", "drug_name", "members", "intervals", "start", "ids", "minutes", "site",
                 "described", "order", "rank_order")

    def __init__(self, kind: Kind, drug_key: str, drug_name: str, members: list[Classified], intervals: list[Interval]):
        self.kind, self.drug_key, self.drug_name, self.members = kind, drug_key, drug_name, members
        self.start: datetime
        self.ids: tuple[str, ...]
        self.site: str | None
        if len(members) == 1:
            m = members[0]
            self.start = m.start if m.start is not None else _FAR_PAST
            self.ids = (m.id,)
            self.site = m.site
        else:
            starts = [m.start for m in members if m.start is not None]
            self.start = min(starts) if starts else _FAR_PAST
            self.ids = tuple(sorted([m.id for m in members]))
            self.site = members[0].site if members else None
        self.intervals = intervals
        if len(intervals) == 1:  # total_minutes, inlined for the usual single interval
            s, e = intervals[0]
            self.minutes = whole_minutes(s, e)
        else:
            self.minutes = total_minutes(intervals)
        self.described: str | None = None  # ``_Ctx.describe`` of the current intervals
        self.order = (self.start, self.ids)  # start/ids never change after construction
        rank = HIERARCHY_RANK.get(kind)
        self.rank_order = (-rank, self.start, self.ids) if rank is not None else None

    def set_intervals(self, intervals: list[Interval]) -> None:
        self.intervals = intervals
        self.minutes = total_minutes(intervals)
        self.described = None

    def order_key(self) -> tuple:
        return self.order

    def hierarchy_key(self) -> tuple:
        return (-HIERARCHY_RANK[self.kind], self.start, self.ids)


_ORDER = attrgetter("order")
_RANK_ORDER = attrgetter("rank_order")


@dataclass
class _Ctx:
    encounter: EncounterInfo
    profile: Profile
    tz: ZoneInfo
    lines: list[CodedLine] = field(default_factory=list)
    warnings: list[CodingWarning] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)
    concurrent_days: set[date] = field(default_factory=set)  # dates of service 96368 was reported on
    _local: dict = field(default_factory=dict)  # instant -> local_parts
    _day_texts: dict = field(default_factory=dict)  # local date -> "YYYY-MM-DD " (see local_parts)

    @property
    def facility(self) -> bool:
        return self.profile.setting is Setting.FACILITY

    def warn(self, code: str, message: str, ids: Sequence[str] = ()) -> None:
        self.warnings.append(coding_warning(code, message, tuple(sorted(ids))))

    def exclude(self, ids: Sequence[str], reason: str) -> None:
        append = self.exclusions.append
        for i in ids:
            append(exclusion(i, reason))

    def emit(self, rule: CodeRule, units: int, day: date, svc: Service, role: str, reason: str,
             minutes: int | None = None, modifiers: tuple[str, ...] = ()) -> None:
        assert rule.code is not None
        self.lines.append(coded_line(rule.code, "CPT", units, modifiers, day, svc.ids, rule.rule, f"{reason} — {rule.text}",
                                     minutes, svc.site, svc.drug_name, (), None, role))  # type: ignore[arg-type]

    def parts(self, instant: datetime) -> tuple[date, str]:
        """(local date, 'YYYY-MM-DD HH:MM') in the site's zone, cached per instant for this encounter."""
        parts = self._local.get(instant)
        if parts is None:
            parts = self._local[instant] = local_parts(instant, self.tz, self._day_texts)
        return parts

    def local(self, instant: datetime) -> str:
        """'YYYY-MM-DD HH:MM' in the site's zone."""
        return self.parts(instant)[1]

    def day(self, instant: datetime) -> date:
        """The local date of service of an instant."""
        parts = self._local.get(instant)
        if parts is None:
            parts = self._local[instant] = local_parts(instant, self.tz, self._day_texts)
        return parts[0]

    def describe(self, svc: Service) -> str:
        text = svc.described
        if text is None:
            texts = []
            cache, tz, day_texts = self._local, self.tz, self._day_texts
            for s, e in svc.intervals:
                a = cache.get(s)  # self.parts(s), inlined (hot)
                if a is None:
                    a = cache[s] = local_parts(s, tz, day_texts)
                a = a[1]
                if s == e:
                    texts.append(a)
                else:
                    b = cache.get(e)
                    if b is None:
                        b = cache[e] = local_parts(e, tz, day_texts)
                    b = b[1]
                    texts.append(f"{a}–{b[11:] if a[:10] == b[:10] else b}")
            text = f"{svc.drug_name} [{', '.join(texts)}] on {svc.site or UNSPECIFIED_SITE}"
            if svc.kind in _TIMED_KINDS:  # where each stop time came from, and the rate documented
                text += " (" + "; ".join(dict.fromkeys(m.timing for m in svc.members)) + ")"
            svc.described = text
        return text


def code_encounter(
    encounter: EncounterInfo,
    events: Sequence[AdministrationEvent],
    formulary: Formulary,
    profile: Profile,
) -> CodingResult:
    """Code one closed encounter.  ``formulary`` should already carry the profile's overrides."""
    ctx = _Ctx(encounter, profile, _zone(profile.timezone))

    classified: list[Classified] = []
    period_end = encounter.period_end
    for start, event in _unique(events, ctx):
        for message in event.source_warnings:
            ctx.warn("source-data", message, (event.id,))
        status = STATUS_RULES[event.status]
        if not status.chargeable:
            ctx.exclude((event.id,), status.reason)
            if status.warning:
                ctx.warn(status.warning, f"administration {event.id}: {status.reason}", (event.id,))
            continue
        c = classify_at(event, start, formulary, profile)
        for n in c.warnings:
            ctx.warn(n.code, n.message, (event.id,))
        if period_end is not None and event.start is not None and event.start > period_end:
            ctx.warn("administered-after-close", f"administration {event.id} starts after the encounter ended", (event.id,))
        classified.append(c)

    _oral_antiemetics_need_chemo(ctx, classified)
    if encounter.encounter_class is EncounterClass.INPATIENT:
        for c in classified:
            if c.kind is not None or c.excluded:
                ctx.exclude((c.id,), "inpatient encounter: no drug administration codes")
    else:
        _code_administrations(ctx, classified)

    drugs, notes = drug_lines(classified, profile, ctx.tz, ctx.day, _first_day(ctx, encounter, classified))
    for n in notes:
        ctx.warn(n.code, n.message, n.administration_ids)
    ctx.lines.extend(drugs)

    lines = sorted(ctx.lines, key=_line_order)
    warnings = sorted({(w.code, w.administration_ids, w.message): w for w in ctx.warnings}.items())
    exclusions = sorted({(x.administration_id, x.reason): x for x in ctx.exclusions}.items())
    return coding_result(encounter.id, profile.setting, tuple(lines), tuple([w for _, w in warnings]),
                         tuple([x for _, x in exclusions]), formulary.version)


def _oral_antiemetics_need_chemo(ctx: _Ctx, classified: list[Classified]) -> None:
    """An oral drug line whose code is billable only with chemotherapy (Q0162-Q0181 and the like)
    is not charged in an encounter with no chemotherapy."""
    if not any(c.entry is not None and c.entry.requires_chemo and c.drug_billable for c in classified):
        return
    if any(c.drug_class in (DrugClass.CHEMO, DrugClass.CHEMO_HORMONAL) for c in classified):
        return
    for c in classified:
        if c.entry is not None and c.entry.requires_chemo and c.drug_billable:
            c.drug_billable = False
            ctx.exclude((c.id,), f"{c.entry.hcpcs} {c.entry.note}; no chemotherapy in this encounter: not charged")


_ROLE_ORDER = {"initial": 0, "standalone": 1, "add-on": 2, "drug": 3}


def _line_order(ln: CodedLine) -> tuple:
    d = ln.__dict__
    return (d["service_date"], _ROLE_ORDER[d["role"]], d["code"], d["modifiers"], d["administration_ids"], d["rule"])


def _first_day(ctx: _Ctx, encounter: EncounterInfo, classified: list[Classified]) -> date | None:
    """The encounter's first date of service: its start, else its earliest administration."""
    if encounter.period_start is not None:
        return ctx.day(to_utc(encounter.period_start))
    starts = [c.start for c in classified if c.start is not None]
    return ctx.day(min(starts)) if starts else None


def _unique(events: Sequence[AdministrationEvent], ctx: _Ctx) -> list[tuple[datetime | None, AdministrationEvent]]:
    """One event per id (deterministically the same whatever the input order), sorted by time.

    Each comes with its start converted to UTC (None without a start)."""
    by_id: dict[str, AdministrationEvent] = {}
    for e in events:
        prev = by_id.get(e.id)
        if prev is None:
            by_id[e.id] = e
        elif prev is not e and prev != e:
            keep = max(prev, e, key=lambda x: x.model_dump_json())
            by_id[e.id] = keep
            ctx.warn("conflicting-duplicate", f"administration {e.id} was given twice with different content; one version kept", (e.id,))
    keyed = []
    for i, e in by_id.items():
        start = e.start
        utc = start.astimezone(timezone.utc) if start is not None else None
        keyed.append((utc or _FAR_PAST, i, utc, e))
    keyed.sort()  # ids are unique: the events themselves are never compared
    return [(k[2], k[3]) for k in keyed]


# --------------------------------------------------------------------------- administrations


def _code_administrations(ctx: _Ctx, classified: list[Classified]) -> None:
    hierarchy: list[Classified] = []
    standalone: list[Classified] = []
    for c in classified:
        if c.excluded:
            ctx.exclude((c.id,), c.excluded)
        elif c.kind in HIERARCHY_RANK:
            hierarchy.append(c)
        elif c.kind is not None:
            standalone.append(c)
    transfusion_windows = _transfusion_windows(ctx, classified)

    initial_reported = False  # facility: a later access's initial service is a second one
    for scope, members in _scopes(ctx, hierarchy):
        if _code_scope(ctx, scope, members, transfusion_windows, second_site=ctx.facility and initial_reported):
            initial_reported = True
    _code_standalone(ctx, standalone)
    _port_irrigation(ctx, [c for c in standalone if c.kind is Kind.PORT_IRRIGATION])
    _drop_orphan_addons(ctx)


def _transfusion_windows(ctx: _Ctx, classified: list[Classified]) -> list[Interval]:
    out: list[Interval] = []
    pad: timedelta | None = None
    for c in classified:
        if c.drug_class is DrugClass.BLOOD and c.start is not None:
            if pad is None:
                pad = timedelta(minutes=ctx.profile.transfusion_window_minutes)
            out.append((c.start - pad, (c.end or c.start) + pad))
    return out


def _best(members: list[Classified]) -> tuple:
    return min([(-HIERARCHY_RANK[c.kind], c.start, c.id) for c in members])  # type: ignore[index]


def _scopes(ctx: _Ctx, hierarchy: list[Classified]) -> list[tuple[str, list[Classified]]]:
    """Facility: one scope per vascular access site.  Professional: one scope per date."""
    if not hierarchy:
        return []
    if not ctx.facility:
        by_day: dict[str, list[Classified]] = defaultdict(list)
        for c in hierarchy:
            by_day[ctx.day(c.start).isoformat()].append(c)  # type: ignore[arg-type]
        for day_members in by_day.values():
            _join_primary_access(ctx, day_members)
        return sorted(by_day.items())
    target = _join_primary_access(ctx, hierarchy)
    by_site: dict[str, list[Classified]] = defaultdict(list)
    for c in hierarchy:
        by_site[c.site or target].append(c)
    if len(by_site) == 1:
        return list(by_site.items())
    return sorted(by_site.items(), key=lambda kv: (_best(kv[1]), kv[0]))


def _join_primary_access(ctx: _Ctx, members: list[Classified]) -> str:
    """Administrations without a documented access site are counted on the primary access
    (the site of the highest service in the hierarchy): for concurrency, summed bags and
    hydration time as well as for the initial service.  Returns the site they joined."""
    unsited = [c for c in members if not c.site]
    if not unsited:
        return UNSPECIFIED_SITE
    by_site: dict[str, list[Classified]] = defaultdict(list)
    for c in members:
        if c.site:
            by_site[c.site].append(c)
    ids = [c.id for c in unsited]
    if not by_site:
        ctx.warn("missing-access-site", f"{len(ids)} administration(s) without a documented access site: coded as one access", ids)
        return UNSPECIFIED_SITE
    target = min(by_site, key=lambda k: (_best(by_site[k]), k))
    ctx.warn("missing-access-site", f"{len(ids)} administration(s) without a documented access site were counted on the primary access {target}; no separate initial service", ids)
    for c in unsited:
        c.site = target
    return target


def _services(ctx: _Ctx, members: list[Classified]) -> list[Service]:
    """Pushes stay single; infusions of the same drug (and all hydration) on one access are summed."""
    services: list[Service] = []
    infusates: dict[tuple[str | None, Kind, str], list[Classified]] = {}
    seen_push: dict[tuple, str] = {}
    facility = ctx.facility
    for c in members:
        kind = c.kind
        if kind in PUSH_KINDS:
            start = c.start
            # Starts are UTC (see _unique): the same minute is the same (date, hour, minute) fields.
            key = (c.site, c.drug_key, start.year, start.month, start.day, start.hour, start.minute)  # type: ignore[union-attr]
            if key in seen_push:
                ctx.warn("possible-duplicate", f"administration {c.id} repeats the push of {c.drug_name} in {seen_push[key]} at the same minute on the same access; counted once", (c.id, seen_push[key]))
                ctx.exclude((c.id,), f"duplicate of {seen_push[key]}")
                continue
            seen_push[key] = c.id
            services.append(Service(kind, c.drug_key, c.drug_name, [c], [(start, c.end or start)]))  # type: ignore[arg-type, list-item]
        else:
            drug = "hydration" if kind is Kind.HYDRATION else c.drug_key
            ikey = (c.site if facility else None, kind, drug)
            group = infusates.get(ikey)  # type: ignore[arg-type]
            if group is None:
                infusates[ikey] = [c]  # type: ignore[index]
            else:
                group.append(c)
    for (_, kind, drug), group in infusates.items():  # type: ignore[assignment]
        if len(group) == 1:
            c = group[0]
            interval = c.interval
            services.append(Service(kind, drug, "hydration (" + c.drug_name + ")" if kind is Kind.HYDRATION else c.drug_name,  # type: ignore[arg-type]
                                    group, [interval] if interval is not None else []))
            continue
        intervals = [c.interval for c in group if c.interval is not None]
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.site == b.site and overlap_minutes([a.interval], [b.interval]) > 0 and a.drug_key == b.drug_key:  # type: ignore[list-item]
                    ctx.warn("possible-duplicate", f"administrations {a.id} and {b.id} of {a.drug_name} overlap on the same access; time counted once", (a.id, b.id))
        name = "hydration (" + ", ".join(sorted({c.drug_name for c in group})) + ")" if kind is Kind.HYDRATION else group[0].drug_name
        services.append(Service(kind, drug, name, sorted(group, key=lambda c: (c.start, c.id)), union(intervals)))  # type: ignore[arg-type]
    return services


def _code_scope(ctx: _Ctx, scope: str, members: list[Classified], transfusions: list[Interval], second_site: bool) -> bool:
    """Code one scope; True when it reported an initial service."""
    services = _services(ctx, members)
    # Hydration around a blood transfusion is not billable.
    for s in services:
        if s.kind is Kind.HYDRATION and transfusions and overlap_minutes(s.intervals, transfusions) > 0:
            s.set_intervals(subtract(s.intervals, transfusions))
            ctx.warn("hydration-around-transfusion", f"hydration time within {ctx.profile.transfusion_window_minutes} min of a blood transfusion is not billable", s.ids)
    services.sort(key=_RANK_ORDER)

    initial: Service | None = None
    for s in services:
        if s.kind is Kind.HYDRATION and s.minutes < THRESHOLDS.hydration_min_minutes:
            continue
        initial = s
        break
    rest = sorted([s for s in services if s is not initial], key=_ORDER)
    hydrations = [s for s in rest if s.kind is Kind.HYDRATION]
    others = [s for s in rest if s.kind is not Kind.HYDRATION]

    placed: dict[str | None, list[Interval]] = defaultdict(list)  # main-line infusion time per access
    infusion_time: dict[str | None, list[Interval]] = defaultdict(list)  # all drug infusion time per access
    last_push: dict[str, datetime] = {}
    infused: dict[str, Interval] = {}  # drug -> (first start, last end) of its infusions so far
    if initial is not None:
        rule = IV_CODES[(initial.kind, Role.INITIAL)]
        modifiers: tuple[str, ...] = ()
        reason = f"initial service on {scope}: {ctx.describe(initial)}, {initial.minutes} min; highest in the hierarchy"
        if second_site:
            modifiers = (ctx.profile.distinct_service_modifier,)
            ctx.warn("second-initial-service", f"a second vascular access ({scope}) has its own initial service {rule.code}-{modifiers[0]}: the medical need for a separate access must be documented", initial.ids)
            reason += f"; separate vascular access, modifier {modifiers[0]}"
        ctx.emit(rule, 1, ctx.day(initial.start), initial, "initial", reason, initial.minutes if initial.kind in INFUSION_KINDS else None, modifiers)
        if initial.kind in INFUSION_KINDS:
            _added_hours(ctx, initial, IV_CODES[(initial.kind, Role.ADDED_HOUR)], skip_first=True)
            placed[initial.site].extend(initial.intervals)
            if initial.kind is not Kind.HYDRATION:
                infusion_time[initial.site].extend(initial.intervals)
                _note_infusion(infused, initial)
        else:
            last_push[initial.drug_key] = initial.start

    for s in others:
        if initial is None:  # cannot happen: any non-hydration service qualifies as initial
            continue
        if s.kind in INFUSION_KINDS:
            infusion_time[s.site].extend(s.intervals)
            _note_infusion(infused, s)
            if overlap_minutes(s.intervals, placed[s.site]) > 0:
                _concurrent(ctx, s)
                continue
            rule = IV_CODES[(s.kind, Role.SEQUENTIAL)]
            ctx.emit(rule, 1, ctx.day(s.start), s, "add-on", f"{ctx.describe(s)}, {s.minutes} min, after the initial service", s.minutes)
            _added_hours(ctx, s, IV_CODES[(s.kind, Role.ADDED_HOUR)], skip_first=True)
            placed[s.site].extend(s.intervals)
        else:
            _push(ctx, s, last_push, infused)

    for h in hydrations:
        own = union(h.intervals)
        billable = subtract(own, [iv for site_ivs in infusion_time.values() for iv in site_ivs] if not ctx.facility else infusion_time[h.site])
        concurrent_minutes = total_minutes(own) - total_minutes(billable)
        minutes = total_minutes(billable)
        if minutes < THRESHOLDS.hydration_min_minutes:
            if concurrent_minutes > 0:
                ctx.exclude(h.ids, f"hydration concurrent with another infusion ({concurrent_minutes} min): not billable; {minutes} min left")
                ctx.warn("hydration-concurrent", f"hydration ran concurrently with another infusion for {concurrent_minutes} min; the remaining {minutes} min do not reach 31 min", h.ids)
            else:
                ctx.exclude(h.ids, f"hydration of {minutes} min: 30 min or less is not billable")
                ctx.warn("hydration-too-short", f"hydration of {minutes} min is 30 minutes or less: not billable", h.ids)
            continue
        h.set_intervals(billable)
        rule = IV_CODES[(Kind.HYDRATION, Role.SEQUENTIAL if initial is not None else Role.INITIAL)]
        note = f"; {concurrent_minutes} min concurrent with another infusion not counted" if concurrent_minutes else ""
        _added_hours(ctx, h, rule, skip_first=False, extra=note)
    return initial is not None


def _note_infusion(infused: dict[str, Interval], s: Service) -> None:
    if s.intervals:
        start, end = s.intervals[0][0], s.intervals[-1][1]
        held = infused.get(s.drug_key)
        infused[s.drug_key] = (min(start, held[0]), max(end, held[1])) if held else (start, end)


def _concurrent(ctx: _Ctx, s: Service) -> None:
    rule = IV_CODES[(s.kind, Role.CONCURRENT)]
    if rule.code is None:
        ctx.exclude(s.ids, rule.text)
        return
    if rule.code == "96368":  # CPT: once per date of service (MUE 1)
        day = ctx.day(s.start)
        if day in ctx.concurrent_days:
            ctx.exclude(s.ids, f"concurrent infusion: 96368 is reported once per date of service and was already reported on {day.isoformat()}")
            return
        ctx.concurrent_days.add(day)
    if rule.unlisted:
        ctx.warn("unlisted-code", f"{ctx.describe(s)}: {rule.text}", s.ids)
    ctx.emit(rule, 1, ctx.day(s.start), s, "add-on", f"{ctx.describe(s)} ran at the same time as another infusion through the same access", s.minutes)


def _push(ctx: _Ctx, s: Service, last_push: dict[str, datetime], infused: dict[str, Interval]) -> None:
    previous = last_push.get(s.drug_key)
    infusion = infused.get(s.drug_key)
    if infusion is not None and infusion[0] > s.start:
        infusion = None  # infused only after this push: the push came first
    if previous is None and infusion is None:
        rule = IV_CODES[(s.kind, Role.SEQUENTIAL)]
        ctx.emit(rule, 1, ctx.day(s.start), s, "add-on", f"{ctx.describe(s)}: push of a new drug after the initial service")
        last_push[s.drug_key] = s.start
        return
    # The same drug again: pushed before, or infused before (not a new drug: no 96375/96411).
    rule = IV_CODES[(s.kind, Role.REPEAT)]
    if previous is not None:
        what, since, after = f"repeat push of {s.drug_name}", previous, "its last reported push"
    else:
        assert infusion is not None
        what, since, after = f"push of {s.drug_name}, already infused (not a new drug)", infusion[1], "its infusion ended"
    gap = whole_minutes(since, s.start)
    if rule.code is None:
        ctx.exclude(s.ids, f"{what}: {rule.text}")
    elif rule.facility_only and not ctx.facility:
        ctx.exclude(s.ids, f"{what}: {rule.code} is not reported in the professional setting")
    elif gap < THRESHOLDS.repeat_push_min_gap_minutes:
        ctx.exclude(s.ids, f"{what} {gap} min after {after}: needs more than 30 min")
    else:
        ctx.emit(rule, 1, ctx.day(s.start), s, "add-on", f"{ctx.describe(s)}: same drug pushed again {gap} min after {after}")
        last_push[s.drug_key] = s.start


def _added_hours(ctx: _Ctx, s: Service, rule: CodeRule, skip_first: bool, extra: str = "") -> None:
    """Each (additional) hour, dated on the day the hour began; > 30 min for a partial hour."""
    minimum = THRESHOLDS.addon_hour_min_minutes + (60 if skip_first else 0)
    if s.minutes < minimum:
        if not skip_first:
            ctx.exclude(s.ids, f"{rule.code}: {s.minutes} min is 30 min or less")
        return
    blocks = hour_starts(s.intervals)
    per_day: dict[date, list[str]] = {}  # day -> "HH:MM+Nmin" of each counted hour begun that day
    threshold = THRESHOLDS.addon_hour_min_minutes
    for start, minutes in blocks[1 if skip_first else 0:]:
        if minutes >= threshold:
            day, local = ctx.parts(start)
            bs = per_day.get(day)
            if bs is None:
                per_day[day] = [f"{local[11:]}+{minutes}min"]
            else:
                bs.append(f"{local[11:]}+{minutes}min")
    what = "additional hour(s)" if skip_first else "hour(s)"
    role = "add-on" if rule.addon else "initial"
    described = ctx.describe(s)
    for day, bs in sorted(per_day.items()) if len(per_day) > 1 else per_day.items():
        parts = ", ".join(bs)
        ctx.emit(rule, len(bs), day, s, role,
                 f"{described}: {s.minutes} min in all; {len(bs)} {what} begun on {day.isoformat()} ({parts}){extra}", s.minutes)


def _code_standalone(ctx: _Ctx, standalone: list[Classified]) -> None:
    injections: dict[tuple[Kind, date], list[Classified]] = defaultdict(list)
    sc_sites: list[str | None] = []
    for c in sorted(standalone, key=lambda c: (c.start or _FAR_PAST, c.id)):
        kind = c.kind
        assert kind is not None
        if kind is Kind.PORT_IRRIGATION:
            continue
        day = ctx.day(c.start or _FAR_PAST)
        if kind in (Kind.CHEMO_INJECTION, Kind.CHEMO_HORMONAL_INJECTION, Kind.THERAPEUTIC_INJECTION):
            injections[(kind, day)].append(c)
            continue
        svc = Service(kind, c.drug_key, c.drug_name, [c], [c.interval] if c.interval else [])
        rule = STANDALONE_CODES[kind]
        if kind is Kind.SC_INFUSION:
            if sc_sites:
                if c.site not in sc_sites:
                    ctx.emit(SC_INFUSION_ADDITIONAL_SITE, 1, day, svc, "add-on", f"{ctx.describe(svc)}: new subcutaneous site")
                    sc_sites.append(c.site)
                else:
                    ctx.exclude(svc.ids, "further subcutaneous infusion through an already established site")
                continue
            sc_sites.append(c.site)
        if rule.unlisted:
            ctx.warn("unlisted-code", f"{ctx.describe(svc)}: {rule.text}", svc.ids)
        ctx.emit(rule, 1, day, svc, "initial" if kind in STANDALONE_ADDED_HOUR else "standalone",
                 f"{ctx.describe(svc)}" + (f", {svc.minutes} min" if svc.intervals else ""), svc.minutes if svc.intervals else None)
        if kind in STANDALONE_ADDED_HOUR and svc.intervals:
            _added_hours(ctx, svc, STANDALONE_ADDED_HOUR[kind], skip_first=True)
    for (kind, day), group in sorted(injections.items(), key=lambda kv: (kv[0][1], kv[0][0].value)):
        svc = Service(kind, "injections", ", ".join([c.drug_name for c in group]), group, [])
        ctx.emit(STANDALONE_CODES[kind], len(group), day, svc, "standalone",
                 f"{len(group)} injection(s): {svc.drug_name}; the IV hierarchy does not apply to SC/IM injections")


def _port_irrigation(ctx: _Ctx, flushes: list[Classified]) -> None:
    if not flushes:
        return
    days_with_service = {ln.service_date for ln in ctx.lines}
    done: set[date] = set()
    for c in sorted(flushes, key=lambda c: (c.start or _FAR_PAST, c.id)):
        if c.start is None:
            ctx.exclude((c.id,), "port irrigation without a time")
            continue
        day = ctx.day(c.start)
        if day in days_with_service:
            ctx.exclude((c.id,), "port irrigation is bundled when another service is reported that day")
        elif day in done:
            ctx.exclude((c.id,), "port irrigation already reported that day")
        else:
            svc = Service(Kind.PORT_IRRIGATION, c.drug_key, c.drug_name, [c], [])
            ctx.emit(STANDALONE_CODES[Kind.PORT_IRRIGATION], 1, day, svc, "standalone", f"port flush on {c.site or UNSPECIFIED_SITE}, nothing else reported that day")
            done.add(day)


def _drop_orphan_addons(ctx: _Ctx) -> None:
    """Remove add-ons none of whose primary codes is on the claim (repeat: removals cascade)."""
    while True:
        present = {ln.code for ln in ctx.lines}
        orphans = [ln for ln in ctx.lines if ln.code in ADDON_PRIMARIES and not (ADDON_PRIMARIES[ln.code] & present)]
        if not orphans:
            return
        for ln in orphans:
            primaries = ", ".join(sorted(ADDON_PRIMARIES[ln.code]))
            ctx.warn("addon-without-primary", f"add-on {ln.code} has none of its primary codes ({primaries}) on the claim: removed", ln.administration_ids)
            ctx.exclude(ln.administration_ids, f"{ln.code} removed: add-on without its primary")
        ctx.lines[:] = [ln for ln in ctx.lines if ln not in orphans]
