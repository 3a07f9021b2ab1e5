"""Semi-sync owed to a primary that was promoted without it: the monitor's decisions.

A failover that finds no other replica to acknowledge the promoted node's commits promotes it
with the source (waiting) side of semi-sync off: with lossless settings
(``wait_no_slave=ON``, no timeout) every commit would otherwise wait for a replica that is not
there. That primary then runs asynchronously, and the next failure may lose acknowledged
writes. Once a semi-sync replica follows it again the monitor turns the source side back on.

The rules live here, free of servers, so that they can be tested alone:

* :func:`owes_semi_sync`: a primary is *owed* semi-sync when the cluster ran it (configured:
  ``FailoverOptions.semi_sync=True``; detected: the primary before it waited for
  acknowledgements, or the failover that promoted it said so) and its source side is off. A
  cluster that never ran semi-sync, or ``FailoverOptions.semi_sync=False``, never is; an
  operator who turns it off on a primary that had it is left alone.
* :func:`count_now`: while one is owed, the round's own probes tell which replicas follow it
  (free); its connected semi-sync replicas are counted on the server only when that set
  changed, then less and less often (2, 4, 8 ... up to ``every`` rounds): no round trip per
  round when nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SemiSyncDebt", "count_now", "owes_semi_sync"]


def owes_semi_sync(
    *,
    configured: bool | None,
    owed: bool,
    changed: bool,
    was_on: bool | None,
    now_on: bool | None,
) -> bool:
    """Is the source side of semi-sync to be turned back on on the primary just read?

    :param configured: ``FailoverOptions.semi_sync`` (``None``: follow what the cluster ran).
    :param owed: it was owed already (a failover promoted it without, or an earlier read).
    :param changed: the primary is another node than at the last read.
    :param was_on: the source side of the primary read before (``None``: unknown).
    :param now_on: the source side of this primary (``None``: unreadable, or none there).

    >>> owes_semi_sync(configured=None, owed=False, changed=True, was_on=True, now_on=False)
    True
    >>> owes_semi_sync(configured=None, owed=False, changed=False, was_on=True, now_on=False)
    False
    """
    if configured is False or now_on is True:
        return False
    if now_on is None:  # not readable now (or no source side): keep what was known
        return owed
    return configured is True or owed or (changed and was_on is True)


def count_now(
    asked: tuple[frozenset[str], int, int] | None,
    followers: frozenset[str],
    rounds: int,
    every: int,
) -> bool:
    """Count the owed primary's semi-sync replicas on the server this round?

    :param asked: ``(followers, round, tries)`` of the last count that found none (``None``:
        never counted with these followers).
    :param followers: the replicas whose IO thread is connected to the primary this round.
    :param rounds: the monitor's current round.
    :param every: the most rounds between two counts while nothing changes.

    >>> count_now(None, frozenset({"db2"}), 7, 30)
    True
    >>> count_now((frozenset({"db2"}), 7, 3), frozenset({"db2"}), 10, 30)
    False
    """
    if not followers:
        return False
    if asked is None or asked[0] != followers:
        return True
    _, at, tries = asked
    wait: int = min(every, 2 << min(tries, 16))
    return rounds - at >= wait


@dataclass(slots=True)
class SemiSyncDebt:
    """The monitor's memory of semi-sync owed to a primary."""

    owed: str | None = None
    """The primary whose source side is to be turned back on (``None``: nothing owed)."""
    asked: tuple[frozenset[str], int, int] | None = None
    """``(followers, round, tries)`` of the last count of its semi-sync replicas that found
    none (see :func:`count_now`)."""

    def note(self, primary: str, owed: bool) -> bool:
        """Record whether *primary* is owed semi-sync; ``True`` when that is news."""
        before = self.owed
        self.owed = primary if owed else None  # a debt of another node died with its role
        if self.owed != before:
            self.asked = None
        return owed and before != primary
