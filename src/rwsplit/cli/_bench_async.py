"""``rwsplit bench --workers asyncio``: the clients are asyncio tasks on one event loop.

The same units as the thread and process clients (:func:`rwsplit.cli.bench._unit`), through
``AsyncSession``: ``rwsplit`` uses :meth:`rwsplit.Cluster.async_session`, ``plain`` and
``haproxy`` an ``AsyncSession`` on one async engine per role. The URLs' driver is replaced by
``aiomysql`` (``pip install aiomysql``). advanced-alchemy has an async maker too, but it is
left to the thread and process clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import make_url

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from .bench import ClientResult, TargetSpec

ASYNC_SETUPS = ("plain", "rwsplit", "haproxy")
ASYNC_DRIVER = "aiomysql"


def async_url(url: str) -> str:
    """*url* with its driver replaced by :data:`ASYNC_DRIVER` (the password kept)."""
    parsed = make_url(url)
    backend = parsed.drivername.split("+", 1)[0]
    return parsed.set(drivername=f"{backend}+{ASYNC_DRIVER}").render_as_string(hide_password=False)


def asyncio_unavailable(setup: str) -> str | None:
    """Why *setup* cannot run with asyncio clients here (``None``: it can)."""
    if setup not in ASYNC_SETUPS:
        return f"{setup} has no asyncio client here (use --workers threads or processes)"
    if importlib.util.find_spec(ASYNC_DRIVER) is None:
        return f"{ASYNC_DRIVER} is not installed (pip install {ASYNC_DRIVER})"
    return None


class AsyncTarget(Protocol):
    """A setup as the asyncio clients see it (the async twin of ``bench.Target``)."""

    def read(self) -> AsyncSession: ...

    def write(self) -> AsyncSession: ...

    def follow(self, token: str | None) -> AsyncSession: ...

    def token(self, session: AsyncSession) -> str | None: ...

    def routed(self) -> dict[str, dict[str, float]]: ...

    async def close(self) -> None: ...


class _AsyncPlain:
    def __init__(self, write_url: str, read_url: str, pool: dict[str, Any]) -> None:
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        self._engines: list[AsyncEngine] = [create_async_engine(async_url(write_url), **pool)]
        if read_url != write_url:
            self._engines.append(create_async_engine(async_url(read_url), **pool))
        self._write = async_sessionmaker(self._engines[0])
        self._read = async_sessionmaker(self._engines[-1])

    def read(self) -> AsyncSession:
        return self._read()

    def write(self) -> AsyncSession:
        return self._write()

    def follow(self, token: str | None) -> AsyncSession:
        return self._read()

    def token(self, session: AsyncSession) -> str | None:
        return None

    def routed(self) -> dict[str, dict[str, float]]:
        return {}

    async def close(self) -> None:
        for engine in self._engines:
            await engine.dispose()


class _AsyncRwSplit:
    def __init__(self, spec: TargetSpec) -> None:
        from ..cluster import Cluster
        from .bench import _cluster_options

        self.cluster = Cluster(
            async_url(spec.primary), [async_url(r) for r in spec.replicas], **_cluster_options(spec)
        )

    def read(self) -> AsyncSession:
        return self.cluster.async_session()

    write = read

    def follow(self, token: str | None) -> AsyncSession:
        return self.cluster.async_session(causal_token=token)

    def token(self, session: AsyncSession) -> str | None:
        return getattr(session, "causal_token", None)

    def routed(self) -> dict[str, dict[str, float]]:
        from .bench import _routed

        return _routed(self.cluster)

    async def close(self) -> None:
        await self.cluster.aclose()


def build_async_target(spec: TargetSpec) -> AsyncTarget:
    """The :class:`AsyncTarget` for *spec* (built on the loop that will use it)."""
    from .bench import _engine_options

    pool = _engine_options(spec)
    if spec.setup == "plain":
        return _AsyncPlain(spec.primary, spec.primary, pool)
    if spec.setup == "haproxy":
        assert spec.read_url is not None
        return _AsyncPlain(spec.primary, spec.read_url, pool)
    if spec.setup == "rwsplit":
        return _AsyncRwSplit(spec)
    raise ConfigurationError(f"{spec.setup}: {asyncio_unavailable(spec.setup)}")


async def _unit(target: AsyncTarget, kind: str, client: int, rng: random.Random, rows: int) -> bool:
    """One unit, as ``bench._unit`` runs it; False on a stale read."""
    from .bench import READ_UNITS, WRITE_UNITS, _ryw_get, _ryw_post, _statement

    if kind in READ_UNITS:
        async with target.read() as s:
            (await s.execute(_statement(kind, rng, rows))).all()
    elif kind in WRITE_UNITS:
        async with target.write() as s:
            await s.execute(_statement(kind, rng, rows))
            await s.commit()
    elif kind == "ryw":
        value = rng.getrandbits(62)
        async with target.write() as s:  # POST
            await s.execute(_ryw_post(client, value))
            await s.commit()
            token = target.token(s)
        async with target.follow(token) as s:  # GET after the redirect
            seen = (await s.execute(_ryw_get(client))).scalar_one()
        return bool(seen == value)
    else:  # pragma: no cover - mixes are validated
        raise ConfigurationError(f"unknown unit {kind!r}")
    return True


async def _client(
    target: AsyncTarget,
    mix: Mapping[str, int],
    client: int,
    *,
    seed: int,
    rows: int,
    duration: float,
    count: int | None,
    start: asyncio.Event,
    ready: Callable[[], None],
    done: Callable[[int], None],
) -> ClientResult:
    """One client's loop, as ``bench.run_client`` runs it."""
    from .bench import _ClientLoop

    loop = _ClientLoop(mix, client, seed=seed, duration=duration, count=count, done=done)
    for kind in loop.kinds:  # warm-up, not measured
        with contextlib.suppress(Exception):
            await _unit(target, kind, client, loop.rng, rows)
    ready()
    await start.wait()
    for kind in loop.units():
        t0 = time.perf_counter()
        try:
            fresh = await _unit(target, kind, client, loop.rng, rows)
        except Exception as exc:  # a load test counts errors instead of stopping
            loop.failed(exc)
        else:
            loop.ran(kind, time.perf_counter() - t0, fresh)
    return loop.result


def run_async_clients(
    spec: TargetSpec,
    mix: Mapping[str, int],
    clients: int,
    *,
    seed: int,
    rows: int,
    duration: float,
    count: int | None,
    counts: list[int],
    started: Callable[[], None],
) -> tuple[Sequence[ClientResult], dict[str, dict[str, float]]]:
    """Run *clients* asyncio tasks on a new event loop; their results and rwsplit's routing.

    *counts* receives each client's progress; *started* is called once every client has
    warmed up, when the measured part begins.
    """

    async def main() -> tuple[list[ClientResult], dict[str, dict[str, float]]]:
        target = build_async_target(spec)
        try:
            start = asyncio.Event()
            waiting = [clients]

            def ready() -> None:
                waiting[0] -= 1
                if waiting[0] == 0:
                    started()
                    start.set()

            def progress(i: int) -> Callable[[int], None]:
                def done(n: int) -> None:
                    counts[i] = n

                return done

            tasks = [
                _client(
                    target,
                    mix,
                    i,
                    seed=seed,
                    rows=rows,
                    duration=duration,
                    count=count,
                    start=start,
                    ready=ready,
                    done=progress(i),
                )
                for i in range(clients)
            ]
            results = list(await asyncio.gather(*tasks))
            return results, target.routed()
        finally:
            await target.close()

    return asyncio.run(main())
