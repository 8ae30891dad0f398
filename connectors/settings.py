"""Worker settings: a YAML file and ``INFUSION_CHARGES_*`` environment variables.

Precedence (highest first): keyword arguments (the command line), environment variables
(nested with ``__``, e.g. ``INFUSION_CHARGES_TOPICS__CHARGES=billing.v2``), the YAML file,
defaults.  Secrets (SASL password, key password) are ``SecretStr`` and never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from coding_core.profile import Profile


class Topics(BaseModel):
    """The topics the worker reads and writes (``topics:`` in the settings)."""

    model_config = ConfigDict(extra="forbid")

    fhir_administrations: str = "fhir.medication-administration"  # in: FHIR MedicationAdministrations (resources or Bundles)
    fhir_encounters: str = "fhir.encounter"  # in: FHIR Encounters; finished closes, cancelled discards
    hl7_ras: str = "hl7v2.ras"  # in: HL7 v2 RAS messages
    hl7_adt: str = "hl7v2.adt"  # in: HL7 v2 ADT messages; A03 closes, A11 discards, A13 reopens
    # Compacted reference topic of FHIR Medications (key = id), read in full by every worker.
    fhir_medications: str = "fhir.medication"
    charges: str = "billing.charge-items"  # out: one FHIR transaction Bundle per revision, key = encounter id
    dead_letter: str = "infusion-charges.dead-letter"  # out: what failed, with the reason in headers
    events: str = "infusion-charges.events"  # internal: mapped records keyed by encounter (not compacted)
    state: str = "infusion-charges.state"  # internal, compacted: each encounter's state (the changelog)

    def inputs(self) -> tuple[str, ...]:
        return (self.fhir_administrations, self.fhir_encounters, self.hl7_ras, self.hl7_adt)


class Security(BaseModel):
    """Kafka security: PLAINTEXT, SASL PLAIN/SCRAM over TLS, or mutual TLS."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = "PLAINTEXT"  # Kafka security.protocol
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None  # required with SASL_*
    sasl_username: str | None = None  # required with SASL_*
    sasl_password: SecretStr | None = None  # required with SASL_*; never logged (use the environment variable or a Secret)
    ssl_cafile: Path | None = None  # CA bundle that signed the brokers' certificates (default: the system's)
    ssl_certfile: Path | None = None  # client certificate (mTLS), with ssl_keyfile
    ssl_keyfile: Path | None = None  # the client certificate's private key (mTLS)
    ssl_key_password: SecretStr | None = None  # the private key's password, if it has one
    ssl_check_hostname: bool = True  # check that the broker's certificate names the host connected to

    @model_validator(mode="after")
    def _complete(self) -> Security:
        if self.protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ValueError("SASL needs sasl_mechanism, sasl_username and sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("mutual TLS needs both ssl_certfile and ssl_keyfile")
        return self

    def kafka_config(self) -> dict[str, Any]:
        """kafka-python client arguments."""
        cfg: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            assert self.sasl_password is not None
            cfg.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                       sasl_plain_password=self.sasl_password.get_secret_value())
        if self.protocol in ("SSL", "SASL_SSL"):
            cfg["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, key)
                if value is not None:
                    cfg[key] = str(value)
            if self.ssl_key_password is not None:
                cfg["ssl_password"] = self.ssl_key_password.get_secret_value()
        return cfg


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFUSION_CHARGES_", env_nested_delimiter="__", extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"  # Kafka brokers, comma-separated host:port
    group_id: str = "infusion-charges"  # consumer group: the workers sharing the partitions
    # Kafka client id; with exactly-once, give each worker its own (e.g. the pod name).
    client_id: str = "infusion-charges-worker"
    topics: Topics = Field(default_factory=Topics)  # topic names (table below)
    security: Security = Field(default_factory=Security)  # TLS and SASL (table below)
    # Partitions of the internal topics when the worker creates them (scale-out limit).
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)  # of the topics the worker creates
    # Create missing topics at start (needs the Create ACL).  False: the cluster's operators
    # create them; a missing topic then stops the worker (TopicMismatch, exit 2) naming each one.
    create_topics: bool = True
    # The site's time zone when the profile names none; a profile naming another zone stops the worker.
    timezone: str = "America/New_York"
    profile: Path | None = None  # payer/site profile (YAML/JSON; table below); default: CMS facility rules
    formulary: Path | None = None  # default: the bundled formulary
    # Outpatient encounters whose feed sends no discharge close after this much silence.
    idle_close_minutes: int = Field(default=240, ge=1)
    # How long a closed encounter's state is kept for late administrations.
    retention_days: int = Field(default=30, ge=1)
    # After retention an encounter is kept as a small marker (id and revision) for this long,
    # so a record arriving that late is dead-lettered instead of starting it again.
    retired_memory_days: int = Field(default=365, ge=1)
    # Consumer group timing (short values make tests and rebalances fast).
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000  # longest a worker may go between polls before the group drops it
    # "at-least-once" (deterministic results, a crash may repeat one) or "exactly-once"
    # (Kafka transactions; real clusters only — tansu accepts them but does not hide aborts).
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    metrics_port: int | None = 9464  # HTTP /metrics, /healthz, /readyz on 0.0.0.0; null: none
    # The local state store (one SQLite file per events partition owned).  On a volume that
    # outlives the process, a restart reads only the changelog's tail; a new one reads it all.
    state_dir: Path = Path("infusion-charges-state")
    # SIGTERM: the worker finishes, commits and exits within this bound (keep it below the
    # pod's terminationGracePeriodSeconds); work it could not commit in time is repeated by
    # the next owner of its partitions.
    shutdown_timeout_s: float = Field(default=30.0, ge=1)
    # /healthz answers 503 once the worker's loop has not turned for this long.
    liveness_timeout_s: float = Field(default=120.0, ge=5)
    # Kafka request timeout (produce, commit, metadata, admin).
    request_timeout_ms: int = Field(default=10_000, ge=1000)
    # At start: how long to keep trying to reach bootstrap_servers (and log in) before exiting 2.
    bootstrap_timeout_ms: int = Field(default=30_000, ge=1000)
    # How long a produced record may stay unacknowledged before the worker repeats its work since
    # the last commit (a broker pause longer than this is ridden out by repeating, not by crashing).
    delivery_timeout_ms: int = Field(default=30_000, ge=1000)
    # Results, changelog and offsets are checkpointed at most this often (and when idle).
    commit_interval_ms: int = Field(default=250, ge=10)
    # An encounter update (a close) waits until every input partition has been read past its
    # time; a partition read to its end counts as read up to this long before its end was
    # asked for: the delay between a producer stamping a record and the broker holding it
    # (its linger, the network, clock skew between hosts).  Adds up to this to close-to-charge
    # on quiet partitions.  A record later than this is not lost: it re-codes its encounter
    # and the charges are corrected in a new revision.
    hold_grace_ms: int = Field(default=100, ge=0)
    # Measure the grace, at most hold_grace_ms: the largest lateness of the last 10 s (a
    # record stamped before an end-offset query that did not yet hold it); hold_grace_ms after
    # a quiet spell, until the hold has watched for that long (see connectors/hold.py).
    # false: always hold_grace_ms.
    hold_grace_measured: bool = True
    # Longest a fetch waits for data on the broker.  Kafka answers a parked fetch as soon as
    # data arrives, but tansu (the embedded broker) waits the whole time, and every hop of
    # the pipeline (input, events) pays it at light load (docs/performance.md, close-to-charge).
    # An idle worker fetches 40 times a second, which costs little.
    fetch_max_wait_ms: int = Field(default=25, ge=0)
    # Least data a fetch asks for before the broker answers (it answers after fetch_max_wait_ms
    # otherwise).  At 1, a live feed answers fetches about as fast as records arrive, and each
    # round trip costs kafka-python's threads CPU: at 100 administrations/s a worker uses
    # 0.31-0.44 of a core (an idle one 0.09).  16384 makes a fetch wait for more: 0.19-0.23 of a
    # core at 100/s, 0.30-0.39 instead of 0.50-0.61 at 300/s, for a close-to-charge p50 of
    # ~90-110 ms instead of 50-80 ms (docs/performance.md, CPU under live load).  At 1,000/s
    # it hardly changes either.
    fetch_min_bytes: int = Field(default=1, ge=1)
    # How long the producer gathers records into a batch.  Each new batch wakes kafka-python's
    # sender thread (a system call and a switch of the interpreter lock); at light load the
    # events hop and the charges each wait up to this (docs/performance.md, close-to-charge).
    linger_ms: int = Field(default=5, ge=0)
    # Input messages larger than this are dead-lettered without being parsed.
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    # A dead-lettered message keeps its bytes in the dead-letter record up to this size.  A
    # larger one is left out: the dead-letter topic would refuse it, and the worker would
    # stop on the same message after every restart.  Its headers then give its size, and the
    # message itself stays at its source topic, partition and offset.  Keep this within the
    # dead-letter topic's max.message.bytes (Kafka's default is 1 MB).
    max_dead_letter_bytes: int = Field(default=1_000_000, ge=1024)
    # An encounter's changelog state (zlib-compressed above 1 KB, ~8-11x) is at most this large;
    # the worker creates the state topic with a max.message.bytes to match.  A larger state
    # blocks its encounter: the records that made it so are dead-lettered (StateTooLarge), later
    # ones too (EncounterBlocked), until an operator re-admits it (recode --reopen).  4 MB holds
    # a stay of well over 10,000 administrations with their charges (synthetic records compress
    # to ~40 bytes each, before their ChargeItems).
    max_state_bytes: int = Field(default=4_000_000, ge=1024)
    # A revision bundle larger than this is not published: the triggering record is
    # dead-lettered (RevisionTooLarge) and the encounter is left as last published.  Keep it
    # within the charges topic's max.message.bytes (Kafka's default is 1 MB).
    max_revision_bytes: int = Field(default=1_000_000, ge=1024)
    # Key of the digests that name encounters in logs and dead letters (HMAC-SHA-256; see
    # docs/operations.md, Logs).  Without one the digest is a plain SHA-256 and a warning says so.
    log_id_key: SecretStr | None = None
    # The worker's own log level (kafka-python's is kafka_log_level).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # No DEBUG: kafka-python's DEBUG lines carry raw frames, record keys and values (PHI) and
    # the SASL PLAIN token, which holds the password.
    kafka_log_level: Literal["INFO", "WARNING", "ERROR"] = "WARNING"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = init_settings.init_kwargs.pop("_config_file", None)  # type: ignore[attr-defined]
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from ``config_file`` (YAML), the environment and ``overrides``."""
        if config_file is not None and not Path(config_file).is_file():
            raise FileNotFoundError(f"{config_file}: no such configuration file")
        kwargs = {k: v for k, v in overrides.items() if v is not None}
        if config_file is not None:
            kwargs["_config_file"] = Path(config_file)
        try:
            return cls(**kwargs)
        except ValidationError as e:
            raise ValueError(f"{config_file or 'settings'}: {settings_errors(e)}") from None

    def kafka_config(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap_servers.split(","), "client_id": self.client_id,
                "bootstrap_timeout_ms": self.bootstrap_timeout_ms, **self.security.kafka_config()}


# Error types whose message is the project's own text (validators), never the input.
_OWN_MESSAGES = {"value_error", "assertion_error"}


def settings_errors(e: ValidationError) -> str:
    """A settings ValidationError as "field.path: error type" items: never the input values
    (pydantic's own rendering quotes them, passwords included)."""
    parts = []
    for err in e.errors(include_url=False, include_input=False):
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(settings)"
        what = err.get("msg", err["type"]) if err["type"] in _OWN_MESSAGES else err["type"]
        parts.append(f"{loc}: {what}")
    return "; ".join(parts)


def site_profile(settings: Settings, profile: Profile) -> Profile:
    """The profile the worker codes with, carrying the site's one time zone.

    Coding dates services in ``profile.timezone``; HL7 times without an offset are read in
    the same zone, so the two can never differ.  The zone comes from the profile file when it
    names one, else from the worker settings (``timezone``); both naming different zones is a
    configuration error, as is a name that is not an IANA time zone."""
    from_settings = settings.timezone if "timezone" in settings.model_fields_set else None
    from_profile = profile.timezone if "timezone" in profile.model_fields_set else None
    if from_settings and from_profile and from_settings != from_profile:
        raise ValueError(f"timezone: the worker settings say '{from_settings}' but the profile says '{from_profile}'; "
                         "the site has one time zone")
    zone = from_profile or from_settings or profile.timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: '{zone}' is not an IANA time zone") from None
    return profile if zone == profile.timezone else profile.model_copy(update={"timezone": zone})
