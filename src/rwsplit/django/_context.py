"""Per-request routing state that must follow a request, not a thread.

Django makes one ``DatabaseWrapper`` per thread and reuses it across requests; under ASGI one
thread serves many requests and one request may hop threads (``sync_to_async``). What belongs
to *a request* — ``use_primary()`` blocks and the causal tokens carried from an earlier
request — therefore lives in context variables, which asyncio tasks and asgiref's
``sync_to_async`` / ``async_to_sync`` carry along, and which thread-locals would not.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, TypeVar

__all__ = [
    "CausalScope",
    "causal_scope",
    "current_scope",
    "forced_primary",
    "read_only",
    "read_only_requested",
    "use_primary",
]

F = TypeVar("F", bound=Callable[..., Any])

_forced: contextvars.ContextVar[tuple[str | None, ...]] = contextvars.ContextVar(
    "rwsplit_django_use_primary", default=()
)
_read_only: contextvars.ContextVar[tuple[str | None, ...]] = contextvars.ContextVar(
    "rwsplit_django_read_only", default=()
)


@dataclass
class CausalScope:
    """The causal tokens of one request: alias -> GTID of its (or an earlier) last write.

    The backend reads a token before routing a read to a replica (the replica must have
    applied it) and writes the new one after each commit that wrote.
    """

    tokens: dict[str, str] = field(default_factory=dict)
    changed: bool = False
    """A commit in this scope produced a new token (the middleware then sends it back)."""

    def update(self, alias: str, token: str) -> None:
        if self.tokens.get(alias) != token:
            self.tokens[alias] = token
            self.changed = True


_scope: contextvars.ContextVar[CausalScope | None] = contextvars.ContextVar(
    "rwsplit_django_causal_scope", default=None
)


def current_scope() -> CausalScope | None:
    """The causal scope of the running request (``None`` outside one)."""
    return _scope.get()


@contextmanager
def causal_scope(tokens: dict[str, str] | None = None) -> Iterator[CausalScope]:
    """Run a block as one causal scope, continuing from *tokens* (alias -> GTID).

    The middleware wraps each request in one; use it yourself to carry read-your-writes from
    a job to another (pass the ``tokens`` of the first scope to the second).
    """
    scope = CausalScope(dict(tokens or {}))
    reset = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(reset)


def forced_primary(alias: str) -> bool:
    """True inside a ``use_primary()`` block that covers *alias*."""
    forced = _forced.get()
    return bool(forced) and (None in forced or alias in forced)


def read_only_requested(alias: str) -> bool:
    """True inside a ``read_only()`` block that covers *alias*."""
    marks = _read_only.get()
    return bool(marks) and (None in marks or alias in marks)


class _Scoped:
    """A context manager and decorator (sync and ``async def``) that marks a context variable
    with an alias (``None``: every alias) for the duration of a block; nestable."""

    _var: ClassVar[contextvars.ContextVar[tuple[str | None, ...]]]

    def __init__(self, using: str | None = None) -> None:
        self.using = using
        self._resets: list[contextvars.Token[tuple[str | None, ...]]] = []

    def __enter__(self) -> None:
        self._resets.append(self._var.set((*self._var.get(), self.using)))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._var.reset(self._resets.pop())

    def __call__(self, func: F) -> F:
        using = self.using
        kind = type(self)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with kind(using):  # a fresh instance per call: calls may overlap
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with kind(using):
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]


class read_only(_Scoped):  # lower case: used like a function (`with read_only():`)
    """The block (or decorated view) only reads: its ``atomic()`` may run on one replica.

    * an outermost ``transaction.atomic()`` opened inside it runs as one
      ``START TRANSACTION READ ONLY`` on one caught-up replica — every statement of the block
      on that replica's connection, one consistent snapshot — after the replica applied the
      request's causal token (read-your-writes); when no replica can take it (all lagging or
      down, ``use_primary()``, a connection pinned by session state) it runs on the primary;
    * anything but a plain read in the block — a write, DDL, ``select_for_update()``,
      session state, a statement the classifier does not know — raises ``ProgrammingError``
      (carrying :class:`~rwsplit.RoutingError`) before it reaches any server, inside
      ``atomic()`` or not;
    * plain reads outside ``atomic()`` go to replicas as always.

    A context manager and a decorator, for sync and ``async def`` views alike; nestable.
    *using* limits it to one database alias (default: every rwsplit alias). An ``atomic()``
    already open when the block starts stays where it is (the primary).

    >>> with read_only():
    ...     read_only_requested("default")
    True
    >>> read_only_requested("default")
    False
    """

    _var = _read_only


class use_primary(_Scoped):  # lower case: used like a function (`with use_primary():`)
    """Every statement in the block (or decorated view) goes to the primary.

    A context manager and a decorator, for sync and ``async def`` views alike; nestable.
    *using* limits it to one database alias (default: every rwsplit alias).

    >>> with use_primary():
    ...     forced_primary("default")
    True
    >>> forced_primary("default")
    False
    >>> @use_primary(using="default")
    ... def view():
    ...     return forced_primary("default"), forced_primary("other")
    >>> view()
    (True, False)
    """

    _var = _forced
