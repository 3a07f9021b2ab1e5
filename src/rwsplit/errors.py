"""The rwsplit exception hierarchy.

Every error rwsplit raises on purpose is a :class:`RwSplitError`; messages say what happened
and what to do about it. Passwords never appear in a message.

::

    RwSplitError
     ├── ConfigurationError            bad option, URL, file or key
     │    └── SecretError              an ENC(...) value cannot be decrypted / key missing
     ├── SandboxError                  the local sandbox cluster cannot start / stop
     │    └── ServerBinaryNotFoundError  no mariadbd / mysqld installed
     ├── RoutingError                  a statement cannot be routed
     │    ├── NoReplicaAvailableError  no readable replica and fallback to the primary is off
     │    ├── NoPrimaryError           no writable primary is known right now
     │    │    └── NotPrimaryError     the node taken for the primary says it is not one
     │    │         └── FencedNodeError  read-only, replicating, or replaced (failover log)
     │    └── SplitBrainError          two nodes claim to be the primary: writes refused
     ├── ClassificationError           the classifier was given something that is not SQL text
     ├── ReadFailedError               a read failed with its node and could not be re-run
     ├── PrimaryFailedError            the primary failed under a write (see subclasses)
     │    ├── RetryableWriteError      nothing can have been committed: retry the unit of work
     │    └── TransactionOutcomeUnknownError  the commit may or may not have happened
     ├── TopologyError                 the cluster's topology cannot be discovered
     └── FailoverError                 an automated failover / switchover step failed
"""

from __future__ import annotations

__all__ = [
    "ClassificationError",
    "ConfigurationError",
    "FailoverError",
    "FencedNodeError",
    "NoPrimaryError",
    "NoReplicaAvailableError",
    "NotPrimaryError",
    "PrimaryFailedError",
    "ReadFailedError",
    "RetryableWriteError",
    "RoutingError",
    "RwSplitError",
    "SandboxError",
    "SecretError",
    "ServerBinaryNotFoundError",
    "SplitBrainError",
    "TopologyError",
    "TransactionOutcomeUnknownError",
]


class RwSplitError(Exception):
    """Root of every error rwsplit raises on purpose."""


class ConfigurationError(RwSplitError, ValueError):
    """A configuration value, URL, file or key is missing or malformed."""


class SecretError(ConfigurationError):
    """An encrypted value cannot be decrypted, or its key is missing."""


class SandboxError(RwSplitError):
    """The local sandbox cluster could not be started, inspected or stopped."""


class ServerBinaryNotFoundError(SandboxError):
    """No MariaDB / MySQL server binary was found on this machine."""


class RoutingError(RwSplitError):
    """A statement could not be routed to a suitable node."""


class NoReplicaAvailableError(RoutingError):
    """No replica can take a read and falling back to the primary is disabled."""


class NoPrimaryError(RoutingError):
    """No writable primary is known right now (for example during a failover)."""


class NotPrimaryError(NoPrimaryError):
    """The node rwsplit took for the primary says, on the server, that it is not one."""


class FencedNodeError(NotPrimaryError):
    """The node rwsplit would write to is read-only, replicates, or was replaced as primary."""


class SplitBrainError(RoutingError):
    """More than one node claims to be the primary; writes are refused."""


class ClassificationError(RwSplitError, TypeError):
    """The classifier was given something that is not SQL text."""


class ReadFailedError(RwSplitError):
    """A read failed because its node went away, and could not be re-run elsewhere."""


class PrimaryFailedError(RwSplitError):
    """The primary failed while a write was in flight."""


class RetryableWriteError(PrimaryFailedError):
    """The primary failed before anything could be committed: retry the unit of work."""


class TransactionOutcomeUnknownError(PrimaryFailedError):
    """The primary failed during a transaction or commit: its outcome is unknown."""


class TopologyError(RwSplitError):
    """The cluster's topology could not be discovered or is inconsistent."""


class FailoverError(RwSplitError):
    """An automated failover or switchover step failed."""
