"""HL7 v2 RAS throughput: messages parsed *and* mapped to events per second, on one core.

Measures, in the same run and on the same realistic messages (1-3 orders, 1-2 RXA each,
escape sequences, Z-segments), the lean path (``mapping.hl7_in.map_message``) and the
hl7apy path (hl7apy parse + the same extraction and mapping), and prints the ratio.
Goal: >= 10,000 RAS messages/s with the lean path.

    python benchmarks/bench_hl7.py [--messages N] [--reference-messages M] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mapping import hl7_in  # noqa: E402
from mapping.hl7_er7 import read_segments  # noqa: E402
from mapping.hl7_reference import read_segments_reference  # noqa: E402

TZ = ZoneInfo("America/New_York")
DRUGS = [("J9312", "rituximab", "700", "mg"), ("J2405", "ondansetron", "8", "mg"), ("J1100", "dexamethasone", "12", "mg"),
         ("J7030", "Sodium chloride 0.9\\T\\ 1000 mL", "1000", "mL"), ("J0696", "ceftriaxone", "1000", "mg"),
         ("J9267", "paclitaxel", "175", "mg"), ("J1200", "diphenhydramine", "25", "mg")]


def build(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        segs = [
            f"MSH|^~\\&|PYXIS|GENHOSP|CHARGES|GENHOSP|20261109{rng.randint(8, 17):02d}3000||RAS^O17^RAS_O17|RAS{i:07d}|P|2.5.1",
            f"PID|1||MRN{rng.randint(1, 99999):05d}^^^GENHOSP^MR||DOE^JANE||19700101|F",
            f"PV1|1|O|ONC^{rng.randint(1, 30)}^1||||||||||||||||V{i:07d}^^^GENHOSP^VN",
        ]
        for o in range(rng.randint(1, 3)):
            segs.append(f"ORC|RE|ORD{i}{o}|PH{i}{o}")
            for s in range(rng.randint(1, 2)):
                code, text, amount, units = rng.choice(DRUGS)
                h = rng.randint(8, 15)
                segs.append(f"RXA|0|{s + 1}|20261109{h:02d}{rng.randint(0, 59):02d}00-0500|20261109{h + 1:02d}{rng.randint(0, 59):02d}00-0500|"
                            f"{code}^{text}^HPC|{amount}|{units}^{units}^UCUM|||||||||||||CP|A")
            segs.append(f"RXR|IV^Intravenous^HL70162|LA^Left arm^HL70163|PORT{i % 5}^Implanted port^HL70164|{rng.choice(['IVP', 'IVPB'])}^^HL70165")
            if rng.random() < 0.3:
                segs.append("ZPX|cabinet 4|drawer 2")
        out.append("\r".join(segs))
    return out


def map_with_reference(message: str) -> None:
    """The hl7apy path: the same extraction and mapping, hl7apy's parse underneath."""
    original = hl7_in.read_segments
    hl7_in.read_segments = read_segments_reference  # type: ignore[assignment]
    try:
        hl7_in.map_message(message, TZ)
    finally:
        hl7_in.read_segments = original  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--reference-messages", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    messages = build(args.messages)
    administrations = sum(m.count("\rRXA|") for m in messages)
    assert hl7_in.read_segments is read_segments

    def best(fn, items) -> float:
        t_best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            for m in items:
                fn(m)
            t_best = min(t_best, time.perf_counter() - t)
        return len(items) / t_best

    lean = best(lambda m: hl7_in.map_message(m, TZ), messages)
    reference = best(map_with_reference, messages[: args.reference_messages])
    print(f"messages: {len(messages)} RAS, {administrations / len(messages):.1f} administrations/message")
    print(f"{'path':<40}{'messages/s':>14}")
    print(f"{'hl7apy parse + map (reference)':<40}{reference:>14,.0f}")
    print(f"{'lean reader + map':<40}{lean:>14,.0f}")
    print(f"lean/hl7apy: {lean / reference:.1f}x; goal 10,000 messages/s: {'met' if lean >= 10000 else 'NOT met'} ({lean / 10000:.2f}x)")
    print(json.dumps({"lean_messages_per_s": round(lean), "hl7apy_messages_per_s": round(reference), "ratio": round(lean / reference, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
