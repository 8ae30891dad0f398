"""The rule tables for CPT 96360–96549: every administration code the engine emits is decided
here (drug lines take their HCPCS codes from the formulary).

Reading guide for a newcomer:
- ``Kind`` / ``HIERARCHY_RANK``: what an administration *is* and how it ranks when the
  initial service is chosen (chemo infusion > chemo push > therapeutic infusion >
  therapeutic push > hydration).
- ``IV_CODES``: which code a service gets for the role it plays on its access site
  (initial, sequential new drug, repeat push of the same drug, concurrent, additional hour).
  The rule for 96367, for instance, is the row ``(THERAPEUTIC_INFUSION, Role.SEQUENTIAL)``.
- ``STANDALONE_CODES``: services outside the initial/subsequent hierarchy (SC/IM injections,
  intra-arterial, subcutaneous infusion, pumps, port irrigation, unlisted).
- ``ADDON_PRIMARIES``: which primary codes each add-on code needs on the claim.
- ``THRESHOLDS``: the time thresholds.
The engine (``engine.py``) applies these tables; the one code it names itself is 96368, billed
once per date of service.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    # In the IV hierarchy (one initial service per access site per encounter):
    CHEMO_INFUSION = "chemo infusion"
    CHEMO_PUSH = "chemo push"
    THERAPEUTIC_INFUSION = "therapeutic infusion"
    THERAPEUTIC_PUSH = "therapeutic push"
    HYDRATION = "hydration"
    # Outside the hierarchy:
    CHEMO_INJECTION = "chemo SC/IM injection"
    CHEMO_HORMONAL_INJECTION = "hormonal chemo SC/IM injection"
    THERAPEUTIC_INJECTION = "therapeutic SC/IM injection"
    SC_INFUSION = "subcutaneous infusion"
    IA_CHEMO_PUSH = "intra-arterial chemo push"
    IA_CHEMO_INFUSION = "intra-arterial chemo infusion"
    IA_CHEMO_PROLONGED_PUMP = "intra-arterial chemo infusion > 8 h with pump"
    IA_THERAPEUTIC = "intra-arterial therapeutic injection"
    CHEMO_PROLONGED_PUMP = "chemo infusion > 8 h with pump"
    PUMP_REFILL_PORTABLE = "portable pump refill/maintenance"
    PUMP_REFILL_IMPLANTABLE = "implantable pump refill/maintenance"
    PORT_IRRIGATION = "implanted port irrigation"
    UNLISTED_CHEMO = "unlisted chemo administration"
    UNLISTED_THERAPEUTIC = "unlisted therapeutic administration"


class Role(StrEnum):
    INITIAL = "initial"
    SEQUENTIAL = "sequential"  # a new drug after the initial (or hydration secondary to it)
    REPEAT = "repeat"  # the same drug pushed again
    CONCURRENT = "concurrent"  # running at the same time through the same access
    ADDED_HOUR = "added-hour"  # each additional hour of an infusion


HIERARCHY_RANK: dict[Kind, int] = {
    Kind.CHEMO_INFUSION: 5,
    Kind.CHEMO_PUSH: 4,
    Kind.THERAPEUTIC_INFUSION: 3,
    Kind.THERAPEUTIC_PUSH: 2,
    Kind.HYDRATION: 1,
}

INFUSION_KINDS = frozenset({Kind.CHEMO_INFUSION, Kind.THERAPEUTIC_INFUSION, Kind.HYDRATION})
PUSH_KINDS = frozenset({Kind.CHEMO_PUSH, Kind.THERAPEUTIC_PUSH})


@dataclass(frozen=True)
class Threshold:
    push_max_minutes: int = 15  # an IV administration of 15 min or less is a push
    infusion_min_minutes: int = 16  # 96365/96367/96413/96417 need at least 16 min
    hydration_min_minutes: int = 31  # 96360 (and secondary 96361) need at least 31 min
    addon_hour_min_minutes: int = 31  # an additional hour needs > 30 min beyond the full hour
    repeat_push_min_gap_minutes: int = 31  # 96376: > 30 min after the last reported push
    prolonged_pump_min_minutes: int = 481  # 96416/96425: more than 8 hours


THRESHOLDS = Threshold()


@dataclass(frozen=True)
class CodeRule:
    code: str | None  # None: the service is not separately reportable in that role
    rule: str  # rule id carried in the explanation
    text: str  # why
    addon: bool = False
    unlisted: bool = False
    facility_only: bool = False


# (kind, role) -> code.  The hierarchy codes.
IV_CODES: dict[tuple[Kind, Role], CodeRule] = {
    (Kind.CHEMO_INFUSION, Role.INITIAL): CodeRule("96413", "chemo.infusion.initial", "chemo IV infusion, initial, up to 1 h (>= 16 min)"),
    (Kind.CHEMO_INFUSION, Role.ADDED_HOUR): CodeRule("96415", "chemo.infusion.added-hour", "chemo IV infusion, each additional hour (> 30 min beyond each full hour)", addon=True),
    (Kind.CHEMO_INFUSION, Role.SEQUENTIAL): CodeRule("96417", "chemo.infusion.sequential", "chemo IV infusion, sequential infusion of a different drug, once per sequential infusate; its added hours are 96415", addon=True),
    (Kind.CHEMO_INFUSION, Role.CONCURRENT): CodeRule("96549", "chemo.infusion.concurrent", "concurrent chemo infusion through the same access: unlisted chemo administration", unlisted=True),
    (Kind.CHEMO_PUSH, Role.INITIAL): CodeRule("96409", "chemo.push.initial", "chemo IV push, single or initial drug"),
    (Kind.CHEMO_PUSH, Role.SEQUENTIAL): CodeRule("96411", "chemo.push.additional", "chemo IV push, each additional drug", addon=True),
    (Kind.CHEMO_PUSH, Role.REPEAT): CodeRule(None, "chemo.push.repeat", "the same chemo drug pushed again is not an additional drug (96411 is per additional drug)"),
    (Kind.THERAPEUTIC_INFUSION, Role.INITIAL): CodeRule("96365", "ther.infusion.initial", "therapeutic IV infusion, initial, up to 1 h (>= 16 min)"),
    (Kind.THERAPEUTIC_INFUSION, Role.ADDED_HOUR): CodeRule("96366", "ther.infusion.added-hour", "therapeutic IV infusion, each additional hour (> 30 min beyond each full hour)", addon=True),
    (Kind.THERAPEUTIC_INFUSION, Role.SEQUENTIAL): CodeRule("96367", "ther.infusion.sequential", "additional sequential infusion of a new drug, up to 1 h (>= 16 min), once per sequential infusate; its added hours are 96366", addon=True),
    (Kind.THERAPEUTIC_INFUSION, Role.CONCURRENT): CodeRule("96368", "ther.infusion.concurrent", "concurrent infusion through the same access, once per date of service", addon=True),
    (Kind.THERAPEUTIC_PUSH, Role.INITIAL): CodeRule("96374", "ther.push.initial", "therapeutic IV push, single or initial drug"),
    (Kind.THERAPEUTIC_PUSH, Role.SEQUENTIAL): CodeRule("96375", "ther.push.sequential", "each additional sequential IV push of a new drug", addon=True),
    (Kind.THERAPEUTIC_PUSH, Role.REPEAT): CodeRule("96376", "ther.push.repeat", "sequential IV push of the same drug > 30 min after its last reported push (facility only)", addon=True, facility_only=True),
    (Kind.HYDRATION, Role.INITIAL): CodeRule("96360", "hydration.initial", "IV hydration, initial, 31 min to 1 h"),
    (Kind.HYDRATION, Role.ADDED_HOUR): CodeRule("96361", "hydration.added-hour", "IV hydration, each additional hour (> 30 min beyond each full hour)", addon=True),
    (Kind.HYDRATION, Role.SEQUENTIAL): CodeRule("96361", "hydration.secondary", "hydration secondary to another initial service through the same access (>= 31 min, then > 30 min per further hour)", addon=True),
    (Kind.HYDRATION, Role.CONCURRENT): CodeRule(None, "hydration.concurrent", "hydration running concurrently with another infusion is not billable"),
}

# kind -> (code, rule id, why) for services outside the initial/subsequent hierarchy.
STANDALONE_CODES: dict[Kind, CodeRule] = {
    Kind.CHEMO_INJECTION: CodeRule("96401", "injection.chemo", "chemo SC/IM injection, non-hormonal; one unit per injection"),
    Kind.CHEMO_HORMONAL_INJECTION: CodeRule("96402", "injection.chemo-hormonal", "hormonal anti-neoplastic SC/IM injection; one unit per injection"),
    Kind.THERAPEUTIC_INJECTION: CodeRule("96372", "injection.therapeutic", "therapeutic SC/IM injection; one unit per injection"),
    Kind.IA_CHEMO_PUSH: CodeRule("96420", "ia.chemo.push", "intra-arterial chemo, push technique"),
    Kind.IA_CHEMO_INFUSION: CodeRule("96422", "ia.chemo.infusion", "intra-arterial chemo infusion, up to 1 h"),
    Kind.IA_CHEMO_PROLONGED_PUMP: CodeRule("96425", "ia.chemo.prolonged-pump", "intra-arterial chemo infusion > 8 h requiring a portable/implantable pump"),
    Kind.IA_THERAPEUTIC: CodeRule("96373", "ia.therapeutic", "therapeutic intra-arterial injection"),
    Kind.CHEMO_PROLONGED_PUMP: CodeRule("96416", "chemo.prolonged-pump", "initiation of prolonged chemo infusion (> 8 h) requiring a portable/implantable pump"),
    Kind.SC_INFUSION: CodeRule("96369", "sc.infusion.initial", "subcutaneous infusion, up to 1 h, including pump set-up and site(s)"),
    Kind.PUMP_REFILL_PORTABLE: CodeRule("96521", "pump.refill.portable", "refill/maintenance of a portable pump"),
    Kind.PUMP_REFILL_IMPLANTABLE: CodeRule("96522", "pump.refill.implantable", "refill/maintenance of an implantable pump or reservoir"),
    Kind.PORT_IRRIGATION: CodeRule("96523", "port.irrigation", "irrigation of an implanted venous access device, only when no other service is reported that day"),
    Kind.UNLISTED_CHEMO: CodeRule("96549", "unlisted.chemo", "unlisted chemotherapy administration: needs manual review", unlisted=True),
    Kind.UNLISTED_THERAPEUTIC: CodeRule("96379", "unlisted.therapeutic", "unlisted therapeutic injection/infusion: needs manual review", unlisted=True),
}

# Additional-hour and additional-site codes of the standalone services.
STANDALONE_ADDED_HOUR: dict[Kind, CodeRule] = {
    Kind.IA_CHEMO_INFUSION: CodeRule("96423", "ia.chemo.added-hour", "intra-arterial chemo infusion, each additional hour", addon=True),
    Kind.SC_INFUSION: CodeRule("96370", "sc.infusion.added-hour", "subcutaneous infusion, each additional hour", addon=True),
}
SC_INFUSION_ADDITIONAL_SITE = CodeRule("96371", "sc.infusion.new-site", "subcutaneous infusion, additional pump set-up with establishment of new site(s)", addon=True)

# add-on code -> primary codes that must be on the same claim (CPT parenthetical notes).
ADDON_PRIMARIES: dict[str, frozenset[str]] = {
    "96361": frozenset({"96360", "96365", "96374", "96409", "96413"}),
    "96366": frozenset({"96365", "96367"}),
    "96367": frozenset({"96365", "96374", "96409", "96413"}),
    "96368": frozenset({"96365", "96366", "96413", "96415", "96416"}),
    "96370": frozenset({"96369"}),
    "96371": frozenset({"96369"}),
    "96375": frozenset({"96365", "96374", "96409", "96413"}),
    "96376": frozenset({"96360", "96365", "96374", "96409", "96413"}),
    "96411": frozenset({"96409", "96413"}),
    "96415": frozenset({"96413"}),
    "96417": frozenset({"96413"}),
    "96423": frozenset({"96422"}),
}

# The distinct-service modifier put on a second access site's initial service.
DISTINCT_SITE_MODIFIER_DEFAULT = "59"

# Drug line for an administration whose drug is not in the formulary.
UNCLASSIFIED_DRUG_HCPCS = "J3490"
