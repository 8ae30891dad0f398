"""One SHA-256 over every revision Bundle the benchmark corpora code to, to check that a change
to the hot path leaves the output byte for byte the same: run it before and after (e.g. in a
``git worktree`` of the earlier commit) and compare.

    python benchmarks/output_digest.py [--profile samples/profile-billing.yaml]

The corpora: the synthetic FHIR and HL7 feeds of 150 and 1,000 encounters (seed 7), each coded
with the default profile and with ``--profile``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coding_core.engine import code_encounter  # noqa: E402
from connectors.codec import published_json  # noqa: E402
from connectors.routing import route_fhir, route_hl7  # noqa: E402
from connectors.settings import Topics  # noqa: E402
from connectors.synthetic import generate  # noqa: E402
from mapping.chargeitem_out import revision_bundle, to_charge_items  # noqa: E402
from mapping.collector import FeedCollector  # noqa: E402
from mapping.reference_data import formulary_for, load_formulary, load_profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "samples" / "profile-billing.yaml"))
    args = ap.parse_args(argv)
    tz = ZoneInfo("America/New_York")
    digest = hashlib.sha256()
    bundles = 0
    for profile in (load_profile(), load_profile(args.profile)):
        formulary = formulary_for(profile, load_formulary())
        for fmt, router in (("fhir", route_fhir), ("hl7", route_hl7)):
            for n in (150, 1000):
                collector = FeedCollector()
                for _, _, value in generate(n, fmt, Topics(), seed=7):
                    for record in router(value, tz).records:
                        collector.offer(record)
                for enc, (info, events) in sorted(collector.by_encounter().items()):
                    items = to_charge_items(code_encounter(info, events, formulary, profile), info, profile, events)
                    digest.update(published_json(revision_bundle(enc, 1, items)))
                    bundles += 1
    print(f"{bundles} revision bundles, sha256 {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
