"""rwsplit for Django: one ``ENGINE`` line makes one alias the whole cluster.

``"rwsplit.django.mysql"`` (or ``"rwsplit.django"``: :mod:`rwsplit.django.base`) for MariaDB
and MySQL, ``"rwsplit.django.postgresql"`` for PostgreSQL; see docs/django.md and
docs/postgresql.md. Django imports the backends from the ``ENGINE`` name; this package holds
what views use, and imports no Django database code.

>>> from rwsplit.django import read_only, use_primary
>>> with use_primary():
...     pass  # every statement here runs on the primary
>>> with read_only():
...     pass  # writes raise; an atomic() block here runs on one replica
"""

from __future__ import annotations

from ..errors import (
    NoPrimaryError,
    ReadFailedError,
    RetryableWriteError,
    RwSplitError,
    TransactionOutcomeUnknownError,
)
from ._context import CausalScope, causal_scope, current_scope, read_only, use_primary

__all__ = [
    "CausalScope",
    "causal_scope",
    "current_scope",
    "is_retryable",
    "outcome_unknown",
    "read_only",
    "rwsplit_error",
    "use_primary",
]


def rwsplit_error(exc: BaseException) -> RwSplitError | None:
    """The rwsplit error a Django database exception carries (``None``: none).

    >>> rwsplit_error(ValueError("x")) is None
    True
    """
    err = getattr(exc, "rwsplit_error", None)
    if isinstance(err, RwSplitError):
        return err
    return exc if isinstance(exc, RwSplitError) else None


def is_retryable(exc: BaseException) -> bool:
    """True when nothing of the failed unit of work was committed: run it again.

    :class:`~rwsplit.RetryableWriteError` (the primary failed before the commit),
    :class:`~rwsplit.NoPrimaryError` (none known yet: a failover is under way; nothing was
    sent) and :class:`~rwsplit.ReadFailedError` (a read).
    """
    return isinstance(rwsplit_error(exc), (RetryableWriteError, NoPrimaryError, ReadFailedError))


def outcome_unknown(exc: BaseException) -> bool:
    """True when the failed commit may or may not have happened: check before retrying."""
    return isinstance(rwsplit_error(exc), TransactionOutcomeUnknownError)
