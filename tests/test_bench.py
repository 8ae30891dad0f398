"""``infusion-charges bench`` end to end, on tiny feeds: it runs, checks its own results and
prints the figures the issue asks for (the figures themselves are not asserted: machines differ)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

from connectors.bench import main

REQUIRED = {
    "raw_passthrough_msgs_per_s", "pipeline_fhir_msgs_per_s", "pipeline_hl7_msgs_per_s", "ratio_fhir", "ratio_hl7",
    "close_to_charge_p50_ms", "close_to_charge_p99_ms", "coding_core_encounters_per_s", "rss_bytes_per_open_encounter",
}


def test_bench_runs_the_pipeline_and_ends_with_one_json_object():
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--encounters", "6", "--latency-seconds", "1", "--light-rate", "50"])
    lines = out.getvalue().strip().splitlines()
    figures = json.loads(lines[-1])
    assert code == 0 and figures["pipeline_fhir_correct"] and figures["pipeline_hl7_correct"]
    assert REQUIRED <= figures.keys()
    assert all(figures[k] > 0 for k in REQUIRED)
    assert abs(figures["ratio_fhir"] - figures["pipeline_fhir_msgs_per_s"] / figures["raw_passthrough_msgs_per_s"]) < 1e-3
    assert figures["close_to_charge_encounters"] > 0 and figures["close_to_charge_light_encounters"] > 0
    assert figures["pipeline_fhir_worker_cpu_us_per_msg"] > 0 and figures["two_hop_passthrough_msgs_per_s"] > 0
    assert any(line.startswith("goal ratio_fhir >= 0.5:") for line in lines)
    # where close-to-charge goes, from the worker's histograms: every stage was observed
    for key in ("close_to_charge_stages_mean_ms", "close_to_charge_light_stages_mean_ms"):
        stages = figures[key]
        assert all(0 <= stages[s] < 60_000 for s in ("queued", "held", "events_and_coding")), stages
        assert stages["total"] > stages["held"] and stages["total"] > stages["events_and_coding"]
