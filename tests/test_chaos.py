"""Chaos: feed N encounters while killing the worker with SIGKILL at random moments K times.

At the end every encounter's latest revision equals the offline result, nothing is lost and
every repeated revision is byte-identical.  Bounded: N=40 encounters (FHIR and HL7, ~700
administrations), K=3 kills, seeded randomness; a few tens of seconds on tansu.  A longer run:
``INFUSION_CHAOS_ENCOUNTERS=200 INFUSION_CHAOS_KILLS=10 INFUSION_CHAOS_SEED=7 pytest -s
tests/test_chaos.py`` (it prints N, K and the result).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from connectors.synthetic import generate, offline_charges
from tests.pipeline_helpers import all_results, billable, charged_as, latest_revisions, produce, settings_for, write_config

N_ENCOUNTERS = int(os.environ.get("INFUSION_CHAOS_ENCOUNTERS", "40"))  # even: half FHIR, half HL7
KILLS = int(os.environ.get("INFUSION_CHAOS_KILLS", "3"))
SEED = int(os.environ.get("INFUSION_CHAOS_SEED", "20261125"))


def test_random_sigkills_lose_nothing_and_repeat_nothing_different(kafka_bootstrap, tmp_path):
    rng = random.Random(SEED)
    settings = settings_for(kafka_bootstrap)
    messages = generate(N_ENCOUNTERS // 2, "fhir", settings.topics, seed=SEED) + generate(N_ENCOUNTERS // 2, "hl7", settings.topics, seed=SEED)
    truth = offline_charges(messages, settings.topics)
    assert len(truth) == N_ENCOUNTERS
    config = write_config(settings, tmp_path / "worker.yaml")
    cmd = [sys.executable, "-m", "connectors.cli", "run", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    batches = [messages[i::KILLS + 1] for i in range(KILLS + 1)]  # interleaved: every batch touches many encounters

    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kills = 0
    try:
        for batch in batches[:-1]:
            produce(kafka_bootstrap, batch)
            time.sleep(rng.uniform(0.5, 4.0))  # somewhere in the middle of consuming, coding or committing
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        produce(kafka_bootstrap, batches[-1])

        done = charged_as(truth)
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, done, timeout_s=240)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert kills == KILLS
    lost = [e for e in truth if e not in latest or billable(latest[e]) != truth[e]]
    assert lost == [], f"{len(lost)} of {N_ENCOUNTERS} encounters differ from the offline result"
    divergent = [k for k, v in all_results(kafka_bootstrap, settings.topics.charges).items() if len(v) > 1]
    assert divergent == [], "repeated revisions must be byte-identical"
    print(f"chaos: N={N_ENCOUNTERS} encounters, {len(messages)} messages, K={kills} SIGKILLs: 0 lost, 0 divergent duplicates")
