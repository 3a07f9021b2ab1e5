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

from sqlalchemy import insert, select, update
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
    def __init__(self, write_url: str, read_url: str, pool: dict[str, int]) -> None:
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
    def __init__(self, spec: TargetSpec, pool: dict[str, int]) -> None:
        from ..cluster import Cluster

        options = dict(spec.cluster_options)
        options["engine_options"] = {**options.get("engine_options", {}), **pool}
        self.cluster = Cluster(
            async_url(spec.primary), [async_url(r) for r in spec.replicas], **options
        )

    def read(self) -> AsyncSession:
        return self.cluster.async_session()

    write = read

    def follow(self, token: str | None) -> AsyncSession:
        return self.cluster.async_session(causal_token=token)

    def token(self, session: AsyncSession) -> str | None:
        return getattr(session, "causal_token", None)

    def routed(self) -> dict[str, dict[str, float]]:
        from .bench import COUNTED

        nodes = self.cluster.stats().to_dict()["nodes"]
        return {name: {k: float(n[k]) for k in COUNTED} for name, n in nodes.items()}

    async def close(self) -> None:
        await self.cluster.aclose()


def build_async_target(spec: TargetSpec) -> AsyncTarget:
    """The :class:`AsyncTarget` for *spec* (built on the loop that will use it)."""
    pool = {"pool_size": spec.pool_size, "max_overflow": spec.pool_size}
    if spec.setup == "plain":
        return _AsyncPlain(spec.primary, spec.primary, pool)
    if spec.setup == "haproxy":
        assert spec.read_url is not None
        return _AsyncPlain(spec.primary, spec.read_url, pool)
    if spec.setup == "rwsplit":
        return _AsyncRwSplit(spec, pool)
    raise ConfigurationError(f"{spec.setup}: {asyncio_unavailable(spec.setup)}")


async def _unit(target: AsyncTarget, kind: str, client: int, rng: random.Random, rows: int) -> bool:
    """One unit, as ``bench._unit`` runs it; False on a stale read."""
    from .bench import _PAD, RANGE_SIZE, items, ryw_rows

    if kind == "point":
        async with target.read() as s:
            (await s.execute(select(items.c.c).where(items.c.id == rng.randint(1, rows)))).all()
    elif kind == "range":
        start = rng.randint(1, max(1, rows - RANGE_SIZE))
        where = items.c.id.between(start, start + RANGE_SIZE - 1)
        async with target.read() as s:
            (await s.execute(select(items.c.c).where(where))).all()
    elif kind in ("update", "insert"):
        if kind == "update":
            stmt: Any = (
                update(items).where(items.c.id == rng.randint(1, rows)).values(k=items.c.k + 1)
            )
        else:
            stmt = insert(items).values(k=rng.randint(1, rows), c=f"{rng.random():.17f}", pad=_PAD)
        async with target.write() as s:
            await s.execute(stmt)
            await s.commit()
    elif kind == "ryw":
        value = rng.getrandbits(62)
        async with target.write() as s:  # POST
            await s.execute(update(ryw_rows).where(ryw_rows.c.client == client).values(value=value))
            await s.commit()
            token = target.token(s)
        async with target.follow(token) as s:  # GET after the redirect
            seen = (
                await s.execute(select(ryw_rows.c.value).where(ryw_rows.c.client == client))
            ).scalar_one()
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
    from .bench import ClientResult

    rng = random.Random(seed * 1_000_003 + client)
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    result = ClientResult(latencies={k: [] for k in kinds})
    for kind in kinds:  # warm-up, not measured
        with contextlib.suppress(Exception):
            await _unit(target, kind, client, rng, rows)
    ready()
    await start.wait()
    result.started = now = time.monotonic()
    stop_at = now + duration
    n = 0
    while (n < count) if count is not None else (now < stop_at):
        kind = rng.choices(kinds, weights)[0]
        t0 = time.perf_counter()
        try:
            fresh = await _unit(target, kind, client, rng, rows)
        except Exception as exc:  # a load test counts errors instead of stopping
            result.errors += 1
            if len(result.error_samples) < 3:
                result.error_samples.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            result.latencies[kind].append(time.perf_counter() - t0)
            if not fresh:
                result.stale_reads += 1
        n += 1
        done(n)
        now = time.monotonic()
    result.ended = now
    return result


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
