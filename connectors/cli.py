"""The ``infusion-charges`` command line: ``code``, ``run``, ``recode``, ``dead-letters``,
``repartition``, ``formulary import|missing``, ``chargemaster`` and ``bench`` (docs/commands.md).

``infusion-charges code [--setting facility|professional] [--profile FILE] [--formulary FILE]
[--explain] [--previous BUNDLE]... FILE...`` reads the files in order, treats every encounter
in them as closed and prints one FHIR Bundle (type ``collection``) of ChargeItems, with
``--explain`` a table per encounter, or with ``--previous`` the corrections of published
revisions.

Exit status: 0 all records coded; 1 some records were rejected (each reported on stderr with
file, position and record id; everything else was still coded and printed); 2 the command
could not run (unreadable file, bad profile or formulary, bad arguments) — nothing printed.

``infusion-charges formulary import CSV... --out FILE`` builds a formulary file from crosswalks;
``infusion-charges formulary missing FILE...`` lists the drugs of a feed the formulary misses.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from coding_core.engine import code_encounter
from coding_core.model import Setting
from mapping.chargeitem_out import bundle, to_charge_items
from mapping.errors import UnreadableSourceError
from mapping.explain_out import explain
from mapping.collector import FeedCollector
from mapping.fhir_in import add_resource, iter_json_document, iter_ndjson
from mapping.hl7_in import add_hl7_text
from mapping.reference_data import ReferenceDataError, formulary_for, load_formulary, load_profile

EXIT_OK, EXIT_REJECTED, EXIT_FAILED = 0, 1, 2

# A reader adds every record of one file's text to the collector.
Reader = Callable[[FeedCollector, str, str, ZoneInfo], None]


def _fhir_records(records: Iterator[tuple[str, Any]], collector: FeedCollector, source: str) -> None:
    for position, record in records:
        add_resource(collector, record, source=source, position=position)


def read_fhir_json(collector: FeedCollector, text: str, source: str, tz: ZoneInfo) -> None:
    _fhir_records(iter_json_document(text, source), collector, source)


def read_fhir_ndjson(collector: FeedCollector, text: str, source: str, tz: ZoneInfo) -> None:
    _fhir_records(iter_ndjson(text, source), collector, source)


def read_hl7(collector: FeedCollector, text: str, source: str, tz: ZoneInfo) -> None:
    if "MSH" not in text:
        raise UnreadableSourceError("no MSH segment: not an HL7 v2 file", source=source)
    add_hl7_text(collector, text, source=source, tz=tz)


def read_sniffed(collector: FeedCollector, text: str, source: str, tz: ZoneInfo) -> None:
    """Standard input or an unknown extension: HL7 if it starts with MSH, a JSON document if
    it parses whole, else NDJSON."""
    if text.lstrip("\x0b \r\n").startswith("MSH"):
        return read_hl7(collector, text, source, tz)
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return read_fhir_ndjson(collector, text, source, tz)
    return read_fhir_json(collector, text, source, tz)


# File readers by extension: the one place a new input format is registered.
READERS: dict[str, Reader] = {
    ".json": read_fhir_json,
    ".ndjson": read_fhir_ndjson,
    ".jsonl": read_fhir_ndjson,
    ".hl7": read_hl7,
    ".er7": read_hl7,
}


def reader_for(path: str) -> Reader:
    return READERS.get(Path(path).suffix.lower(), read_sniffed)


def _read_text(path: str) -> str:
    """UTF-8; HL7 v2 files that are not UTF-8 are read as ISO 8859-1 (HL7's default 8-bit set)."""
    if path == "-":
        return sys.stdin.read()
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UnreadableSourceError("no such file", source=path) from None
    except OSError as e:
        raise UnreadableSourceError(f"cannot read: {e.strerror}", source=path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if reader_for(path) is read_hl7:
            return data.decode("latin-1")
        raise UnreadableSourceError(f"not UTF-8 text (byte {e.start})", source=path) from None


def collect(paths: Sequence[str], tz: ZoneInfo) -> FeedCollector:
    """Read every file in order into one collector; unreadable files raise."""
    collector = FeedCollector()
    for path in paths:
        source = "<stdin>" if path == "-" else path
        reader_for(path)(collector, _read_text(path), source, tz)
    return collector


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _shown_id(encounter_id: str) -> str:
    """An encounter as stderr names it: by its id when that is a FHIR id (an HL7 visit number,
    PV1-19, may be free text: not repeated)."""
    return encounter_id if _FHIR_ID.fullmatch(encounter_id) else "(id not shown)"


def run_code(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        profile = load_profile(args.profile)
        if args.setting:
            profile = profile.model_copy(update={"setting": Setting(args.setting)})
        formulary = formulary_for(profile, load_formulary(args.formulary))
        collector = collect(args.files, ZoneInfo(profile.timezone))
    except (ReferenceDataError, UnreadableSourceError) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED

    failed: list[str] = []
    items: list[dict[str, Any]] = []
    texts: list[str] = []
    encounters = collector.by_encounter()
    for enc_id, (encounter, events) in encounters.items():
        try:
            result = code_encounter(encounter, events, formulary, profile)
            if args.explain:
                texts.append(explain(result, encounter, profile, events))
            else:
                items.extend(to_charge_items(result, encounter, profile, events))
        except Exception as e:  # a defect must not cost the other encounters their charges
            failed.append(f"Encounter/{_shown_id(enc_id)}: coding failed ({type(e).__name__}); other encounters were coded")

    if args.explain:
        out.write("\n".join(texts))
    elif args.previous:
        try:
            previous = _previous_revisions(args.previous)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"infusion-charges: error: --previous: {type(e).__name__}: not a revision Bundle as published", file=err)
            return EXIT_FAILED
        _corrections(items, previous, out, err, profile.fhir_base_url)
    else:
        json.dump(bundle(items, profile.fhir_base_url), out, indent=2, ensure_ascii=False)
        out.write("\n")

    for rejected in collector.errors:
        print(f"infusion-charges: rejected: {rejected}", file=err)
    for msg in failed:
        print(f"infusion-charges: error: {msg}", file=err)
    n_admin = len(collector.administrations)
    print(
        f"infusion-charges: {len(encounters)} encounters, {n_admin} administrations coded; "
        f"{len(collector.errors)} records rejected, {collector.duplicates} duplicates ignored, "
        f"{collector.replaced} replaced by newer versions, {collector.outdated} older versions ignored, "
        f"{collector.ignored} other resources ignored",
        file=err,
    )
    return EXIT_REJECTED if collector.errors or failed else EXIT_OK


def _previous_revisions(paths: Sequence[str]) -> dict[str, tuple[int, dict[str, dict[str, Any]]]]:
    """Published revision Bundles (as on the charges topic) -> encounter -> (revision, items)."""
    out: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
    for path in paths:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        revision = int(doc["meta"]["versionId"])
        resources = {e["resource"]["id"]: e["resource"] for e in doc["entry"]}
        encounters = {r["context"]["reference"].split("/", 1)[1] for r in resources.values()}
        if len(encounters) != 1:
            raise ValueError("a revision Bundle holds one encounter's charges")
        (encounter_id,) = encounters
        if encounter_id not in out or revision > out[encounter_id][0]:
            out[encounter_id] = (revision, resources)
    return out


def _corrections(items: list[dict[str, Any]], previous: dict[str, tuple[int, dict[str, dict[str, Any]]]],
                 out: TextIO, err: TextIO, base_url: str | None) -> None:
    """One transaction Bundle per encounter whose charges differ from its previous revision
    (JSON lines): what the pipeline would publish as the next revision."""
    from mapping.chargeitem_out import revision_bundle

    by_encounter: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_encounter.setdefault(item["context"]["reference"].split("/", 1)[1], []).append(item)
    changed = unchanged = 0
    for encounter_id in sorted(set(by_encounter) | set(previous)):
        revision, published = previous.get(encounter_id, (0, {}))
        current = by_encounter.get(encounter_id, [])
        live = {k: v for k, v in published.items() if v.get("status") != "entered-in-error"}
        if {i["id"]: i for i in current} == live:
            unchanged += 1
            continue
        changed += 1
        out.write(json.dumps(revision_bundle(encounter_id, revision + 1, current, published, base_url=base_url), ensure_ascii=False) + "\n")
    print(f"infusion-charges: {changed} encounters corrected (next revision printed), {unchanged} unchanged", file=err)


def run_worker(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges run``: the Kafka worker, until SIGTERM/SIGINT.  Exit 0 after a stop;
    2 on a fatal error (one JSON error line on stderr: its type and a message naming topics,
    partitions and settings, never record values)."""
    import logging
    import os
    import signal
    import threading

    from connectors.errors import Interrupted, describe
    from connectors.ops import configure_logging, set_id_key
    from connectors.settings import Settings, site_profile
    from connectors.worker import Worker, tune_gc

    configure_logging()
    log = logging.getLogger("infusion_charges.worker")
    try:
        settings = Settings.load(args.config, bootstrap_servers=args.bootstrap_servers, group_id=args.group_id)
        profile = site_profile(settings, load_profile(settings.profile))
        formulary = formulary_for(profile, load_formulary(settings.formulary))
    except (ReferenceDataError, FileNotFoundError, ValueError) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    configure_logging(settings.log_level, settings.kafka_log_level)
    set_id_key(settings.log_id_key.get_secret_value() if settings.log_id_key else None)
    if settings.log_id_key is None:
        log.warning("log_id_key is not set: encounters are named in logs by a plain SHA-256 digest, "
                    "which can be reversed for guessable visit numbers; set INFUSION_CHARGES_LOG_ID_KEY")
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        if stop.is_set():
            return
        stop.set()
        # The last resort for the bound: whatever still blocks after it, the process ends.
        # Nothing past unfinished work has been committed, so the next owner repeats it.
        def overdue() -> None:
            log.error("stop took longer than shutdown_timeout_s %s: exiting without finishing", settings.shutdown_timeout_s)
            os._exit(EXIT_FAILED)
        timer = threading.Timer(settings.shutdown_timeout_s + 2, overdue)
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    tune_gc()
    try:
        Worker(settings, formulary, profile).run(stop)
    except Exception as e:  # fatal: one JSON line, exit 2; a restart repeats the uncommitted work
        cause = e.cause if isinstance(e, Interrupted) else e
        log.error("worker failed: %s", describe(cause), extra={"error_type": type(cause).__name__})
        return EXIT_FAILED
    return EXIT_OK


def run_repartition(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges repartition``: the internal topics moved to a new partition count
    (see connectors/repartition.py and docs/operations.md)."""
    from connectors.errors import WorkerFailed
    from connectors.repartition import repartition
    from connectors.settings import Settings

    try:
        settings = Settings.load(args.config, bootstrap_servers=args.bootstrap_servers)
        moved = repartition(settings, args.partitions, args.events_topic, args.state_topic, args.assume_stopped)
    except (FileNotFoundError, ValueError, WorkerFailed) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    print(f"infusion-charges: copied {moved.state_records} changelog records into {args.state_topic} and "
          f"{moved.events_records} unapplied events into {args.events_topic} ({args.partitions} partitions each). "
          f"Now set partitions: {args.partitions}, topics.events: {args.events_topic}, topics.state: {args.state_topic} "
          "and start the workers.", file=out)
    return EXIT_OK


def run_dead_letters(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges dead-letters list|show|replay`` (see connectors/redrive.py)."""
    from connectors import redrive
    from connectors.errors import WorkerFailed
    from connectors.settings import Settings

    try:
        settings = Settings.load(args.config, bootstrap_servers=args.bootstrap_servers)
        ids = args.ids or ([args.id] if args.id else [])
        if args.action == "replay" and not (ids or args.error_type or args.source_topic or args.all):
            print("infusion-charges: error: replay needs ids, --error-type, --source-topic or --all", file=err)
            return EXIT_FAILED
        letters = redrive.select(redrive.read(settings), ids, args.error_type, args.source_topic)
        missing = sorted(set(ids) - {d.name for d in letters})
        if missing:
            print(f"infusion-charges: error: no dead letter {', '.join(missing)} on {settings.topics.dead_letter}", file=err)
            return EXIT_FAILED
        if args.action == "list":
            for d in letters:
                print(json.dumps(d.summary()), file=out)
            print(f"infusion-charges: {len(letters)} dead letters", file=err)
        elif args.action == "show":
            print(redrive.show(letters[0], args.payload), file=out)
        else:
            done = redrive.replay(settings, letters, dry_run=args.dry_run)
            for name, why in done.skipped:
                print(f"infusion-charges: {name} not replayed: {why}", file=err)
            verb = "would replay" if args.dry_run else "replayed"
            print(f"infusion-charges: {verb} {len(done.sent)} dead letters, {len(done.skipped)} skipped", file=err)
            return EXIT_OK if not done.skipped else EXIT_FAILED
    except (FileNotFoundError, ValueError, WorkerFailed) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    return EXIT_OK


def run_recode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges recode`` (see connectors/recode.py)."""
    from datetime import datetime, timezone

    from connectors import recode
    from connectors.errors import WorkerFailed
    from connectors.settings import Settings

    def ms(text: str | None) -> int | None:
        if text is None:
            return None
        when = datetime.fromisoformat(text)
        return int((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp() * 1000)

    if not (args.encounter or args.all or args.closed_since or args.closed_until or args.stale_formulary):
        print("infusion-charges: error: recode needs --encounter, --closed-since/--closed-until, --stale-formulary or --all", file=err)
        return EXIT_FAILED
    try:
        settings = Settings.load(args.config, bootstrap_servers=args.bootstrap_servers)
        if args.encounter and not (args.all or args.closed_since or args.closed_until or args.stale_formulary):
            chosen = sorted(set(args.encounter))
        else:
            current = formulary_for(load_profile(settings.profile), load_formulary(settings.formulary)).version if args.stale_formulary else None
            chosen = recode.select(recode.held(settings, with_formulary=bool(args.stale_formulary)), ms(args.closed_since),
                                   ms(args.closed_until), current, blocked=args.reopen)
            if args.encounter:
                chosen = sorted(set(chosen) & set(args.encounter))
        if args.dry_run:
            for encounter_id in chosen:
                print(encounter_id, file=out)
            print(f"infusion-charges: would ask {len(chosen)} encounters to be coded again", file=err)
            return EXIT_OK
        n = recode.request(settings, chosen, reopen=args.reopen)
    except (FileNotFoundError, ValueError, WorkerFailed, ReferenceDataError) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    print(f"infusion-charges: asked {n} encounters to be coded again (a revision follows for each whose lines changed)", file=err)
    return EXIT_OK


def run_chargemaster(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges chargemaster --profile P``: the profile's priced chargemaster rows as
    ChargeItemDefinitions, in a transaction Bundle of PUTs to post once to the FHIR server (again
    after each new CDM version); the charges name them in ``definitionCanonical``.  Exit 2 when
    the profile cannot be read or has no chargemaster."""
    from mapping.chargemaster import ChargemasterError, definitions_bundle

    try:
        bundle = definitions_bundle(load_profile(args.profile))
    except (ReferenceDataError, ChargemasterError) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    out.write(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    print(f"infusion-charges: {len(bundle['entry'])} ChargeItemDefinitions", file=err)
    return EXIT_OK


def run_formulary_import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges formulary import``: crosswalk CSVs merged into a formulary file (see
    mapping/formulary_import.py).  Exit 0 every row applied; 1 rows skipped, each reported (the
    file is still written); 2 an input unreadable or in no known layout, or the result not a
    valid formulary -- nothing written."""
    from mapping import formulary_import as fi
    from mapping.crosswalk import CrosswalkError, read_crosswalk

    try:
        base = fi.read_base(args.base)
        crosswalks = [read_crosswalk(path) for path in args.files]
    except (ReferenceDataError, CrosswalkError) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    imported = fi.import_crosswalks(base.formulary, crosswalks)
    for line in fi.report_lines(imported):
        print(f"infusion-charges: {line}", file=err)
    try:
        written = fi.write_formulary(fi.formulary_text(base, crosswalks, imported, args.version), args.out)
    except ReferenceDataError as e:
        print(f"infusion-charges: error: the imported formulary is not valid, nothing written: {e}", file=err)
        return EXIT_FAILED
    except OSError as e:
        print(f"infusion-charges: error: {args.out}: cannot write: {e.strerror}", file=err)
        return EXIT_FAILED
    print(f"infusion-charges: {fi.summary(imported)}; wrote {args.out} (version {written.version}, "
          f"{len(written.entries)} drugs)", file=err)
    return EXIT_REJECTED if imported.count(*fi.SKIPPED) else EXIT_OK


def run_formulary_missing(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``infusion-charges formulary missing``: the drugs of FHIR/HL7 files the formulary does not
    identify, or identifies only by a reduced name, with counts (see mapping/worklist.py)."""
    from connectors.errors import WorkerFailed
    from mapping.worklist import worklist

    if bool(args.files) == bool(args.config):
        print("infusion-charges: error: formulary missing reads FILEs or, with --config, the workers' changelog (state topic)", file=err)
        return EXIT_FAILED
    errors: list[Any] = []
    try:
        if args.config:  # what the workers were sent, as they mapped it
            from connectors.recode import administrations_held
            from connectors.settings import Settings

            settings = Settings.load(args.config, bootstrap_servers=args.bootstrap_servers)
            profile = load_profile(args.profile or settings.profile)
            formulary = formulary_for(profile, load_formulary(args.formulary or settings.formulary))
            events = administrations_held(settings)
        else:
            profile = load_profile(args.profile)
            formulary = formulary_for(profile, load_formulary(args.formulary))
            collector = collect(args.files, ZoneInfo(profile.timezone))
            events = [m.administration for m in collector.administrations.values() if m.administration]
            errors = collector.errors
    except (ReferenceDataError, UnreadableSourceError, FileNotFoundError, ValueError, WorkerFailed) as e:
        print(f"infusion-charges: error: {e}", file=err)
        return EXIT_FAILED
    by_reference = [e for e in events if e.medication_ref is not None]  # the reference table's to resolve
    found = worklist((e for e in events if e.medication_ref is None), formulary)
    for line in found.lines():
        print(line, file=out)
    if by_reference:
        print(f"infusion-charges: {len(by_reference)} administrations name a Medication by id (resolved from the Medication "
              "reference topic): not listed", file=err)
    for rejected in errors:
        print(f"infusion-charges: rejected: {rejected}", file=err)
    print(f"infusion-charges: {found.summary(formulary.version)}; {len(errors)} records rejected", file=err)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infusion-charges", description="Drug-administration charge coding.")
    sub = p.add_subparsers(dest="command", required=True)
    code = sub.add_parser("code", help="code closed encounters from FHIR or HL7 v2 files and print ChargeItems")
    code.add_argument("--setting", choices=[s.value for s in Setting], help="override the profile's setting")
    code.add_argument("--profile", metavar="FILE", help="payer/site profile (YAML or JSON)")
    code.add_argument("--formulary", metavar="FILE", help="formulary data file (default: the bundled one)")
    code.add_argument("--explain", action="store_true", help="print a readable table per encounter instead of FHIR")
    code.add_argument("--previous", action="append", metavar="BUNDLE",
                      help="a revision Bundle as published (repeatable): print, per encounter whose charges changed, "
                           "the next revision's transaction that corrects it (JSON lines)")
    code.add_argument("files", nargs="+", metavar="FILE", help="FHIR JSON (.json), NDJSON (.ndjson), HL7 v2 (.hl7) or - for stdin")
    code.set_defaults(handler=run_code)
    run = sub.add_parser("run", help="run the Kafka worker until SIGTERM")
    run.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers (comma-separated)")
    run.add_argument("--config", metavar="FILE", help="worker settings (YAML); INFUSION_CHARGES_* variables override it")
    run.add_argument("--group-id", help="consumer group (default infusion-charges)")
    run.set_defaults(handler=run_worker)
    rep = sub.add_parser("repartition", help="move the internal topics to a new partition count (workers stopped)")
    rep.add_argument("--config", metavar="FILE", required=True, help="the workers' settings (YAML)")
    rep.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers (comma-separated)")
    rep.add_argument("--partitions", type=int, required=True, help="partition count of the new events and state topics")
    rep.add_argument("--events-topic", required=True, help="name of the new events topic (must not exist)")
    rep.add_argument("--state-topic", required=True, help="name of the new state topic (must not exist)")
    rep.add_argument("--assume-stopped", action="store_true",
                     help="go on when the broker cannot say whether the group has members (you stopped every worker)")
    rep.set_defaults(handler=run_repartition)
    rc = sub.add_parser("recode", help="code closed encounters again (after a formulary or profile fix), through the workers")
    rc.add_argument("--config", metavar="FILE", required=True, help="the workers' settings (YAML)")
    rc.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers (comma-separated)")
    rc.add_argument("--encounter", action="append", metavar="ID", help="an encounter to code again (repeatable)")
    rc.add_argument("--closed-since", metavar="ISO", help="closed encounters whose last record arrived at or after this time")
    rc.add_argument("--closed-until", metavar="ISO", help="... and before this time")
    rc.add_argument("--stale-formulary", action="store_true",
                    help="closed encounters with lines published under another formulary version than the workers'")
    rc.add_argument("--all", action="store_true", help="every closed encounter the workers hold")
    rc.add_argument("--reopen", action="store_true", help="also re-admit blocked encounters")
    rc.add_argument("--dry-run", action="store_true", help="print the encounters that would be coded again, send nothing")
    rc.set_defaults(handler=run_recode)
    dl = sub.add_parser("dead-letters", help="list, show or replay the dead-letter topic's messages")
    dl_sub = dl.add_subparsers(dest="action", required=True)
    for name, text in (("list", "one JSON line per dead letter: id, time, error type, source, size (no payload)"),
                       ("show", "one dead letter with its error message (its payload only with --payload)"),
                       ("replay", "send dead letters back to their source topic, marked as re-driven")):
        a = dl_sub.add_parser(name, help=text)
        a.add_argument("--config", metavar="FILE", required=True, help="the workers' settings (YAML)")
        a.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers (comma-separated)")
        if name == "show":
            a.add_argument("id", metavar="PARTITION:OFFSET", help="the dead letter's place on the dead-letter topic")
            a.add_argument("--payload", action="store_true", help="include the message itself (it may hold PHI)")
        else:
            a.add_argument("--error-type", help="only letters of this error type (e.g. MappingError)")
            a.add_argument("--source-topic", help="only letters from this topic")
        if name == "replay":
            a.add_argument("ids", nargs="*", metavar="PARTITION:OFFSET", help="the dead letters to replay")
            a.add_argument("--all", action="store_true", help="replay every selected letter (needed without ids or filters)")
            a.add_argument("--dry-run", action="store_true", help="say what would be replayed, send nothing")
    # Every action's options, so the handler reads them all (an action's own defaults win).
    dl.set_defaults(handler=run_dead_letters, error_type=None, source_topic=None, all=False, dry_run=False, payload=False, ids=[],
                    id=None)
    fm = sub.add_parser("formulary", help="build a formulary file from NDC/RxNorm crosswalks; list the drugs it misses")
    fm_sub = fm.add_subparsers(dest="action", required=True)
    imp = fm_sub.add_parser("import", help="merge crosswalk CSVs (CMS ASP NDC-HCPCS crosswalk, site crosswalk) into a "
                                           "versioned formulary file for --formulary")
    imp.add_argument("files", nargs="+", metavar="CSV", help="crosswalk files, recognised by their header row")
    imp.add_argument("--base", metavar="FORMULARY", help="the formulary to add to (default: the bundled one)")
    imp.add_argument("--version", help="the new formulary's version (default: <base version>+<8 hex of the inputs' SHA-256>)")
    imp.add_argument("--out", metavar="FILE", required=True, help="the formulary file to write (JSON)")
    imp.set_defaults(handler=run_formulary_import)
    miss = fm_sub.add_parser("missing", help="list, with counts, the drugs of FHIR/HL7 files the formulary does not "
                                             "identify or identifies only by a reduced name")
    miss.add_argument("--formulary", metavar="FILE", help="formulary data file (default: the bundled one)")
    miss.add_argument("--profile", metavar="FILE", help="payer/site profile (YAML or JSON): its time zone and formulary overrides")
    miss.add_argument("files", nargs="*", metavar="FILE", help="FHIR JSON (.json), NDJSON (.ndjson), HL7 v2 (.hl7) or - for stdin")
    miss.add_argument("--config", metavar="FILE", help="instead of files: the workers' settings (YAML); reads their changelog (state topic)")
    miss.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="with --config: Kafka bootstrap servers (comma-separated)")
    miss.set_defaults(handler=run_formulary_missing)
    cdm = sub.add_parser("chargemaster", help="print the profile's priced chargemaster rows as ChargeItemDefinitions "
                                              "(a transaction Bundle to post once to the FHIR server)")
    cdm.add_argument("--profile", metavar="FILE", required=True, help="payer/site profile (YAML or JSON) with a chargemaster")
    cdm.set_defaults(handler=run_chargemaster)
    # Listed for --help only: main() hands "bench ..." to connectors/bench.py, whose options are its own.
    sub.add_parser("bench", add_help=False, help="pipeline benchmark on the embedded broker (bench --help lists its options)")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from connectors.bench import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    return int(args.handler(args, out or sys.stdout, err or sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
