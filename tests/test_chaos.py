"""Chaos: feed N encounters to a group of two workers while killing them with SIGKILL at random
moments K times, with a rebalance under traffic (the second worker joins mid-feed) and a broker
pause (SIGSTOP for P seconds, longer than the session timeout) in the middle.

At the end every encounter's latest revision equals the offline result, nothing is lost, every
repeated revision is byte-identical, and no worker exited on its own.  A killed worker comes
back with its volume (its state directory), as a pod does.  Bounded: N=40 encounters (FHIR
and HL7, ~700 administrations), K=3 kills, P=8 s, seeded randomness; about a minute on tansu.
A longer run: ``INFUSION_CHAOS_ENCOUNTERS=200 INFUSION_CHAOS_KILLS=10 INFUSION_CHAOS_PAUSE_S=30
INFUSION_CHAOS_SEED=7 pytest -s tests/test_chaos.py`` (it prints N, K, P and the result).
"""

from __future__ import annotations

import os
import random
import time

from connectors.broker import EmbeddedBroker
from connectors.synthetic import generate, offline_charges
from tests.pipeline_helpers import WorkerProcess, all_results, billable, charged_as, latest_revisions, produce_paced, settings_for

N_ENCOUNTERS = int(os.environ.get("INFUSION_CHAOS_ENCOUNTERS", "40"))  # even: half FHIR, half HL7
KILLS = int(os.environ.get("INFUSION_CHAOS_KILLS", "3"))
PAUSE_S = float(os.environ.get("INFUSION_CHAOS_PAUSE_S", "8"))
SEED = int(os.environ.get("INFUSION_CHAOS_SEED", "20261125"))


def test_kills_a_rebalance_and_a_broker_pause_under_traffic_lose_nothing_and_repeat_nothing_different(tmp_path):
    rng = random.Random(SEED)
    broker = EmbeddedBroker().start()
    bootstrap = broker.bootstrap
    settings = settings_for(bootstrap, partitions=4, hold_grace_ms=1000, session_timeout_ms=6000, max_poll_interval_ms=8000,
                            request_timeout_ms=3000, delivery_timeout_ms=6000)
    messages = generate(N_ENCOUNTERS // 2, "fhir", settings.topics, seed=SEED) + generate(N_ENCOUNTERS // 2, "hl7", settings.topics, seed=SEED)
    truth = offline_charges(messages, settings.topics)
    assert len(truth) == N_ENCOUNTERS
    batches = [messages[i::KILLS + 2] for i in range(KILLS + 2)]  # interleaved: every batch touches many encounters
    workers = {"a": WorkerProcess(settings, tmp_path, "a")}
    lives = {"a": 1}
    kills, feeds = 0, []

    def kill_and_restart() -> None:
        name = rng.choice(sorted(workers))
        workers[name].kill()
        lives[name] += 1
        workers[name] = WorkerProcess(settings, tmp_path, f"{name}{lives[name]}", state_dir=tmp_path / f"{name}-state")

    try:
        workers["a"].wait_ready()
        for n, batch in enumerate(batches[:-1]):
            feeds.append(produce_paced(bootstrap, batch, 3.0))
            if n == 0:
                time.sleep(1.0)
                workers["b"] = WorkerProcess(settings, tmp_path, "b")  # joins under traffic: a rebalance
                lives["b"] = 1
            if n == len(batches) // 2:
                time.sleep(rng.uniform(0.5, 2.0))
                broker.pause()  # longer than the session and delivery timeouts
                time.sleep(PAUSE_S)
                broker.resume()
            if kills < KILLS:
                time.sleep(rng.uniform(0.5, 4.0))  # somewhere in consuming, coding, committing or rebalancing
                kill_and_restart()
                kills += 1
        while kills < KILLS:  # more kills than batches
            time.sleep(rng.uniform(0.5, 3.0))
            kill_and_restart()
            kills += 1
        feeds.append(produce_paced(bootstrap, batches[-1], 3.0))
        for feed in feeds:
            assert feed.wait(timeout=180) == 0

        done = charged_as(truth)
        latest = latest_revisions(bootstrap, settings.topics.charges, done, timeout_s=300)
        exited = {w.name: (w.proc.returncode, w.tail()) for w in workers.values() if w.proc.poll() is not None}
        assert exited == {}, "a worker exited on its own"
        lost = [e for e in truth if e not in latest or billable(latest[e]) != truth[e]]
        assert lost == [], f"{len(lost)} of {N_ENCOUNTERS} encounters differ from the offline result"
        divergent = [k for k, v in all_results(bootstrap, settings.topics.charges).items() if len(v) > 1]
        assert divergent == [], "repeated revisions must be byte-identical"
    finally:
        broker.resume()
        for w in workers.values():
            w.kill()
        broker.stop()
    assert kills == KILLS
    print(f"chaos: N={N_ENCOUNTERS} encounters, {len(messages)} messages, K={kills} SIGKILLs, a rebalance under traffic, "
          f"a {PAUSE_S:.0f} s broker pause: 0 lost, 0 divergent duplicates")
