"""A TLS and SASL front for the embedded broker, for tests of the worker's Kafka security.

tansu 0.6.0 cannot serve these itself (measured, see docs/operations.md "Kafka security"):
its ``--cert``/``--key`` options are parsed but the listener is never wrapped in TLS (and the
two options exclude each other), it offers SCRAM only, and its in-memory storage keeps no
SCRAM credentials, so every SCRAM login fails.  The gate stands where a Kafka listener's
security layer stands: it terminates TLS (OpenSSL through :mod:`ssl`, optionally requiring a
client certificate signed by the test CA), runs the broker side of the SASL exchange the way
Kafka does (SaslHandshake, then SaslAuthenticate with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512,
RFC 5802), and then relays bytes to tansu, which advertises the gate's port.  Anything a
client sends before it has authenticated, other than ApiVersions, closes the connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kafka.protocol.sasl import SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


@dataclass
class Pki:
    """A test CA with a server certificate for 127.0.0.1 and a client certificate whose key is
    encrypted with ``key_password``; ``wrong_host`` is a server certificate for another name."""

    root: Path
    key_password: str = "client-key-pass"

    def __post_init__(self) -> None:
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", r / "ca.key", "-out", r / "ca.pem",
                      "-days", "2", "-subj", "/CN=infusion-charges test CA")
        self._issue("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost")
        self._issue("wrong-host", "/CN=kafka.example.org", "subjectAltName=DNS:kafka.example.org")
        self._issue("client", "/CN=infusion-charges", "extendedKeyUsage=clientAuth")
        self._openssl("pkey", "-in", r / "client.key", "-aes256", "-passout", f"pass:{self.key_password}",
                      "-out", r / "client-encrypted.key")

    def _issue(self, name: str, subject: str, extension: str) -> None:
        r = self.root
        (r / f"{name}.ext").write_text(extension + "\n")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", r / f"{name}.key", "-out", r / f"{name}.csr", "-subj", subject)
        self._openssl("x509", "-req", "-in", r / f"{name}.csr", "-CA", r / "ca.pem", "-CAkey", r / "ca.key", "-CAcreateserial",
                      "-out", r / f"{name}.pem", "-days", "2", "-extfile", r / f"{name}.ext")

    @staticmethod
    def _openssl(*args: object) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    def server_context(self, require_client_cert: bool = False, cert: str = "server") -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.root / f"{cert}.pem", self.root / f"{cert}.key")
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.root / "ca.pem")
        return ctx


class Scram:
    """The server side of one SCRAM exchange (RFC 5802), two client messages."""

    def __init__(self, mechanism: str, users: dict[str, str]):
        self.hash = HASHES[mechanism]
        self.users = users
        self.step = 0
        self.user: str | None = None

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.hash).digest()

    def respond(self, message: bytes) -> bytes | None:
        """The server's reply, or None when the client failed to authenticate."""
        text = message.decode()
        if self.step == 0:
            self.step = 1
            gs2, _, self.client_first_bare = text.partition(",,")  # "n,," (no channel binding, no authzid)
            fields = dict(part.split("=", 1) for part in self.client_first_bare.split(","))
            self.user = fields["n"]
            self.nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
            self.salt = os.urandom(16)
            self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i=4096"
            return self.server_first.encode()
        without_proof, _, proof = text.rpartition(",p=")
        fields = dict(part.split("=", 1) for part in without_proof.split(","))
        password = self.users.get(self.user or "")
        if password is None or fields.get("r") != self.nonce:
            return None
        salted = hashlib.pbkdf2_hmac(self.hash, password.encode(), self.salt, 4096)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = self._hmac(stored_key, auth_message)
        recovered = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.hash, recovered).digest(), stored_key):
            return None
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        self.step = 2
        return b"v=" + base64.b64encode(server_signature)

    @property
    def done(self) -> bool:
        return self.step == 2


class Plain:
    def __init__(self, users: dict[str, str]):
        self.users = users
        self.done = False

    def respond(self, message: bytes) -> bytes | None:
        _authzid, user, password = message.decode().split("\x00")
        if not hmac.compare_digest(self.users.get(user, "\x00"), password):
            return None
        self.done = True
        return b""


@dataclass
class Gate:
    """Listens on 127.0.0.1:``port`` and relays to the broker at 127.0.0.1:``upstream``."""

    port: int
    upstream: int
    tls: ssl.SSLContext | None = None
    users: dict[str, str] | None = None  # SASL on, with these credentials
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    refused: list[str] = field(default_factory=list)  # why connections were refused, for asserts
    closed: list[str] = field(default_factory=list)  # connections that ended in an error

    def start(self) -> Gate:
        ready = threading.Event()

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
            ready.set()
            async with self._server:
                try:
                    await self._server.serve_forever()
                except asyncio.CancelledError:
                    pass

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError as e:
            self.refused.append(f"upstream {type(e).__name__}")
            writer.close()
            return
        try:
            if self.users is not None and not await self._authenticate(reader, writer, up_reader, up_writer):
                # As Kafka's connection.failed.authentication.delay.ms: the client reads the
                # refusal before the connection closes (closed at once, it may see only the close).
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(), 1.0)
                return
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            self.closed.append(type(e).__name__)  # the client went away, or its TLS handshake failed
        except Exception as e:  # a defect of the gate: visible to the test through `refused`
            self.refused.append(f"gate error {type(e).__name__}: {e}")
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        size = struct.unpack(">i", await reader.readexactly(4))[0]
        return await reader.readexactly(size)

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        assert self.users is not None
        exchange: Scram | Plain | None = None
        while True:
            frame = await self._frame(reader)
            api_key, version, correlation_id = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:  # the broker's own answer
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                answer = await self._frame(up_reader)
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
            elif api_key == SASL_HANDSHAKE:
                mechanism = SaslHandshakeRequest.decode(frame, version=version, header=True).mechanism
                error = 0 if mechanism in self.mechanisms else UNSUPPORTED_SASL_MECHANISM
                if error == 0:
                    exchange = Plain(self.users) if mechanism == "PLAIN" else Scram(mechanism, self.users)
                await self._reply(writer, SaslHandshakeResponse(error_code=error, mechanisms=list(self.mechanisms)), version, correlation_id)
                if error:
                    self.refused.append("mechanism")
                    return False
            elif api_key == SASL_AUTHENTICATE and exchange is not None:
                token = SaslAuthenticateRequest.decode(frame, version=version, header=True).auth_bytes
                answer = exchange.respond(token)
                if answer is None:
                    self.refused.append("credentials")
                    await self._reply(writer, SaslAuthenticateResponse(error_code=SASL_AUTHENTICATION_FAILED, error_message="Authentication failed",
                                                                       auth_bytes=b"", session_lifetime_ms=0), version, correlation_id)
                    return False
                await self._reply(writer, SaslAuthenticateResponse(error_code=0, error_message=None, auth_bytes=answer, session_lifetime_ms=0),
                                  version, correlation_id)
                if exchange.done:
                    return True
            else:
                self.refused.append(f"api {api_key} before authentication")
                return False

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: object, version: int, correlation_id: int) -> None:
        response.API_VERSION = version  # type: ignore[attr-defined]
        response.with_header(correlation_id=correlation_id)  # type: ignore[attr-defined]
        writer.write(response.encode(header=True, framed=True))  # type: ignore[attr-defined]
        await writer.drain()
