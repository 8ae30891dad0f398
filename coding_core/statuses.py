"""Which administration statuses are charged (CODING_RULES, "What is an administration service").

``completed`` and ``stopped`` (for the time actually given) are chargeable.  Everything else
produces no line; ``in-progress`` at close also raises a warning, because the administration
is still running (or its completion was never documented) when the encounter is coded.  HL7 v2
RXA-20 (table 0322) and RXA-21 (table 0206) are mapped onto these statuses by ``mapping.hl7_in``.
"""

from __future__ import annotations

from dataclasses import dataclass

from coding_core.model import AdminStatus


@dataclass(frozen=True, slots=True)
class StatusRule:
    chargeable: bool
    reason: str = ""  # why it is not charged
    warning: str | None = None  # a warning code raised as well


STATUS_RULES: dict[AdminStatus, StatusRule] = {
    AdminStatus.COMPLETED: StatusRule(True),
    AdminStatus.STOPPED: StatusRule(True),
    AdminStatus.IN_PROGRESS: StatusRule(False, "in progress when the encounter was coded: not charged until it is completed or stopped",
                                        "in-progress-at-close"),
    AdminStatus.ON_HOLD: StatusRule(False, "on hold (not given): not charged"),
    AdminStatus.NOT_DONE: StatusRule(False, "not done: not charged"),
    AdminStatus.UNKNOWN: StatusRule(False, "status unknown: not charged"),
    AdminStatus.ENTERED_IN_ERROR: StatusRule(False, "entered in error: not charged"),
}
