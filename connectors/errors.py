"""What the worker does about an error: the one table that decides it.

* ``retry``: the cluster is slow or unreachable for a while (a broker pause, a leader change,
  a coordinator moving).  Nothing done is undone: the worker backs off, keeps polling and
  checkpoints again; records still in flight stay in flight.
* ``rewind``: work since the last commit cannot be trusted to reach Kafka (a produced record
  was not acknowledged) or is no longer ours (the group moved the partitions).  The worker
  drops what it has not committed, seeks every partition back to its committed offset and
  brings its state back from the changelog: an in-process restart.  Deterministic outputs make
  the repeat identical.
* ``fatal``: retrying cannot help (authentication, authorisation, a topic that contradicts the
  settings, a broker that lost data).  ``infusion-charges run`` prints one JSON error line and
  exits 2; offsets past unfinished work are never committed, so a restart repeats it.

Messages of these exceptions name topics, partitions, offsets and settings, never record values.
"""

from __future__ import annotations

from typing import Literal

from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    NoOffsetForPartitionError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

Action = Literal["retry", "rewind", "fatal"]


class WorkerFailed(RuntimeError):
    """A fatal condition: the worker stops and ``run`` exits 2."""


class TopicMismatch(WorkerFailed):
    """An existing topic contradicts the settings (partition count, cleanup policy, size limit)."""


class DataLoss(WorkerFailed):
    """The broker holds less than the worker knows was written: committed offsets past a log's
    end, or a changelog shorter than the local state store's checkpoint."""


class DeliveryPending(RuntimeError):
    """Records produced are still in flight after the flush timeout: try the checkpoint again."""


class DeliveryFailed(RuntimeError):
    """A record the worker produced was not acknowledged by the broker, after the producer's own
    retries.  Nothing past it is committed."""

    def __init__(self, failed: int, cause: BaseException):
        super().__init__(f"{failed} produced record(s) not acknowledged ({type(cause).__name__})")
        self.cause = cause


class Interrupted(RuntimeError):
    """An error in the middle of a poll batch: some of its records were handled, the rest not.
    Only a rewind makes the batch whole again (unless the cause is fatal)."""

    def __init__(self, cause: BaseException):
        super().__init__(describe(cause))
        self.cause = cause


# The group took the partitions away (or is taking them): uncommitted work is no longer ours.
GROUP_MOVED = (CommitFailedError, RebalanceInProgressError, UnknownMemberIdError, IllegalGenerationError)


def classify(error: BaseException) -> Action:
    if isinstance(error, Interrupted):
        return "fatal" if classify(error.cause) == "fatal" else "rewind"
    if isinstance(error, WorkerFailed):
        return "fatal"
    if isinstance(error, DeliveryPending):
        return "retry"
    if isinstance(error, DeliveryFailed):
        cause = error.cause
        return "rewind" if isinstance(cause, KafkaError) and cause.retriable else "fatal"
    if isinstance(error, GROUP_MOVED):
        return "rewind"
    if isinstance(error, NoOffsetForPartitionError):
        return "retry"  # partitions just assigned: the loop positions them on its next turn
    if isinstance(error, KafkaError):
        return "retry" if error.retriable else "fatal"
    return "fatal"


def describe(error: BaseException) -> str:
    """A log-safe description: the exception type, and the message only for our own errors
    (which never carry values); kafka-python's messages may echo configuration."""
    if isinstance(error, (WorkerFailed, DeliveryFailed, DeliveryPending, Interrupted)):
        return str(error)
    return type(error).__name__
