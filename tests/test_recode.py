"""``infusion-charges recode`` through the real broker: after a formulary fix, the encounters
whose lines change get the next revision (changed lines updated, vanished ones withdrawn) and
the others get nothing; a blocked encounter is re-admitted with --reopen."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from connectors.cli import main
from connectors.settings import Settings
from tests.pipeline_helpers import (
    Running,
    all_results,
    charged_as,
    latest_revisions,
    offline_truth,
    produce,
    sample_messages,
    settings_for,
    write_config,
)
from tests.test_fhir_in import r4, r4_bulky


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


def _revisions(bootstrap, topic) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for enc, revision in all_results(bootstrap, topic):
        out.setdefault(enc, set()).add(revision)
    return out


def _wait_for(worker, text: str, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while text not in worker.worker.metrics.render().decode():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@dataclass
class Fixed:
    """The samples charged by a first worker, then the formulary fix written out."""

    settings: Settings  # with the fix
    config: Path  # the fixed settings as a worker.yaml
    truth: dict[str, list[dict]]  # the charges before the fix
    first: dict[str, set[str]]  # encounter -> revisions published before the fix
    with_ondansetron: set[str]  # the encounters whose lines the fix changes

    @property
    def last(self) -> dict[str, int]:
        return {e: max(int(r) for r in revs) for e, revs in self.first.items()}


def _charged_then_fixed(kafka_bootstrap, tmp_path) -> Fixed:
    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    worker = Running(settings)
    try:
        produce(kafka_bootstrap, sample_messages(settings))
        latest_revisions(kafka_bootstrap, settings.topics.charges, charged_as(truth), timeout_s=120)
    finally:
        worker.close()
    # The fix: ondansetron's billing unit corrected in the site profile (a formulary override).
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"formulary_overrides": [{"hcpcs": "J2405", "billing_unit_value": "4"}]}))
    fixed = settings.model_copy(update={"profile": profile})
    with_ondansetron = {e for e, items in truth.items() if any(i["code"]["coding"][0]["code"] == "J2405" for i in items)}
    assert with_ondansetron
    return Fixed(fixed, write_config(fixed, tmp_path / "worker.yaml"), truth, _revisions(kafka_bootstrap, settings.topics.charges),
                 with_ondansetron)


def test_a_formulary_fix_and_recode_publish_the_next_revision_only_where_lines_changed(kafka_bootstrap, tmp_path):
    f = _charged_then_fixed(kafka_bootstrap, tmp_path)
    t, truth, config, first, last, with_ondansetron = f.settings.topics, f.truth, f.config, f.first, f.last, f.with_ondansetron
    code, out, err = _cli("recode", "--stale-formulary", "--dry-run", "--config", str(config))
    assert code == 0 and sorted(out.split()) == sorted(truth), err  # every encounter was charged under the old version
    code, _, err = _cli("recode", "--config", str(config))
    assert code == 2 and "needs" in err  # nothing without a selection

    worker = Running(f.settings)
    try:
        code, _, err = _cli("recode", "--all", "--config", str(config))
        assert code == 0 and f"asked {len(truth)} encounters" in err, err
        latest = latest_revisions(kafka_bootstrap, t.charges,
                                  lambda got: all(int(got.get(e, {}).get("meta", {}).get("versionId", 0)) == last[e] + 1
                                                  for e in with_ondansetron), timeout_s=90)
        for e in with_ondansetron:
            units = [i["quantity"]["value"] for i in (x["resource"] for x in latest[e]["entry"])
                     if i["code"]["coding"][0]["code"] == "J2405" and i["status"] == "billable"]
            before = [i["quantity"]["value"] for i in truth[e] if i["code"]["coding"][0]["code"] == "J2405"]
            assert units and units != before  # the same line, its quantity updated
        time.sleep(2)
        revisions = _revisions(kafka_bootstrap, t.charges)
        # the next revision where ondansetron's lines changed, nothing for the other encounters
        assert revisions == {e: first[e] | ({str(last[e] + 1)} if e in with_ondansetron else set()) for e in first}
        assert _wait_for(worker, f'infusion_charges_records_total{{outcome="recode"}} {float(len(truth))}')

        code, _, err = _cli("recode", "--all", "--config", str(config))  # again: nothing changes, nothing is published
        assert code == 0
        assert _wait_for(worker, f'infusion_charges_records_total{{outcome="recode"}} {float(2 * len(truth))}')
        time.sleep(2)
        assert _revisions(kafka_bootstrap, t.charges) == revisions
        code, out, _ = _cli("recode", "--stale-formulary", "--dry-run", "--config", str(config))
        assert set(out.split()) == set(truth) - with_ondansetron  # the re-published ones carry the new formulary version
    finally:
        worker.close()


def test_recode_reopen_re_admits_a_blocked_encounter(kafka_bootstrap, tmp_path):
    settings = settings_for(kafka_bootstrap, max_state_bytes=4 * 1024)  # the state topic is made for this, + 64 KiB
    t = settings.topics
    big = [r4_bulky(i, context={"reference": "Encounter/enc-big"}) for i in range(20)]
    close = {"resourceType": "Encounter", "id": "enc-big", "status": "finished", "class": {"code": "AMB"}}
    worker = Running(settings)
    try:
        produce(kafka_bootstrap, [(t.fhir_administrations, a["id"].encode(), json.dumps(a).encode()) for a in big]
                + [(t.fhir_encounters, b"enc-big", json.dumps(close).encode())])
        deadline = time.monotonic() + 60
        while worker.worker.stats["blocked"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.worker.stats["blocked"] == 1
    finally:
        worker.close()
    before = _revisions(kafka_bootstrap, t.charges).get("enc-big", set())
    roomy = settings.model_copy(update={"max_state_bytes": 60 * 1024})  # the operator's fix (fits the topic)
    config = write_config(roomy, tmp_path / "worker.yaml")
    worker = Running(roomy)
    try:
        code, _, err = _cli("recode", "--encounter", "enc-big", "--config", str(config))
        assert code == 0, err
        assert _wait_for(worker, 'outcome="recode-blocked"')  # without --reopen it stays blocked
        # a correction while it is blocked is dead-lettered (EncounterBlocked), not applied
        gone = r4_bulky(0, context={"reference": "Encounter/enc-big"}, status="entered-in-error")
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-0", json.dumps(gone).encode())])
        assert _wait_for(worker, 'error_type="EncounterBlocked"')
        code, _, err = _cli("recode", "--encounter", "enc-big", "--reopen", "--config", str(config))
        assert code == 0, err
        assert _wait_for(worker, 'outcome="recode"}')
        # re-admitted: what was dead-lettered while it was blocked goes back in, and applies
        code, _, err = _cli("dead-letters", "replay", "--all", "--config", str(config))  # StateTooLarge ones too
        assert code == 0, err

        def withdrawn(got: dict) -> bool:
            bundle = got.get("enc-big")
            return bundle is not None and any(e["resource"]["status"] == "entered-in-error" for e in bundle["entry"])
        latest = latest_revisions(kafka_bootstrap, t.charges, withdrawn, timeout_s=90)
        assert withdrawn(latest) and latest["enc-big"]["meta"]["versionId"] not in before
        assert worker.thread.is_alive()
    finally:
        worker.close()


def test_kill_9_during_a_recode_loses_nothing_and_repeats_nothing_different(kafka_bootstrap, tmp_path):
    """A recode's commands are events like any other: a worker killed while applying them
    repeats, after its restart, only what it had not committed -- with identical bytes."""
    from tests.pipeline_helpers import WorkerProcess

    f = _charged_then_fixed(kafka_bootstrap, tmp_path)
    t, fixed, config, first, last, with_ondansetron = f.settings.topics, f.settings, f.config, f.first, f.last, f.with_ondansetron

    proc = WorkerProcess(fixed, tmp_path, "a", state_dir=tmp_path / "a-state")
    try:
        proc.wait_ready()
        code, _, err = _cli("recode", "--all", "--config", str(config))
        assert code == 0, err
        time.sleep(0.3)  # somewhere in applying, coding or committing them
        proc.kill()
        proc = WorkerProcess(fixed, tmp_path, "a2", state_dir=tmp_path / "a-state")
        proc.wait_ready()
        latest_revisions(kafka_bootstrap, t.charges,
                         lambda got: all(int(got.get(e, {}).get("meta", {}).get("versionId", 0)) == last[e] + 1
                                         for e in with_ondansetron), timeout_s=120)
        time.sleep(2)
        seen = all_results(kafka_bootstrap, t.charges)
        assert all(len(values) == 1 for values in seen.values()), "a repeated revision differs"
        revisions: dict[str, set[str]] = {}
        for enc, revision in seen:
            revisions.setdefault(enc, set()).add(revision)
        assert revisions == {e: first[e] | ({str(last[e] + 1)} if e in with_ondansetron else set()) for e in first}
    finally:
        proc.kill()
