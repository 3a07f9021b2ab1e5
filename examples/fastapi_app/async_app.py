"""The FastAPI example with ``async`` endpoints: :class:`~sqlalchemy.ext.asyncio.AsyncSession`
dependencies that route like :class:`~rwsplit.RoutingSession`, on ``mysql+aiomysql://`` URLs
(``pip install 'sqlalchemy[asyncio]' aiomysql``) or ``postgresql+psycopg_async://`` ones.

Run it like app.py, with aiomysql URLs (the tables are created when the app starts)::

    pip install -e '.[fastapi,asyncio]' uvicorn
    cd examples/fastapi_app
    rwsplit sandbox up                        # prints the primary and replica URLs
    export RWSPLIT_PRIMARY_URL=mysql+aiomysql://root@127.0.0.1:PORT/rwsplit
    export RWSPLIT_REPLICA_URLS=mysql+aiomysql://root@127.0.0.1:PORT2/rwsplit
    export APP_SECRET_KEY=change-me
    uvicorn --factory async_app:create_app
    curl -si -H 'Content-Type: application/json' -d '{"body": "hi"}' http://127.0.0.1:8000/notes
    rwsplit sandbox down
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at run
# time, and SessionDep is local to create_app.

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import Cluster
from rwsplit.fastapi import RwSplit, aclose_cluster


def whoami_sql(dialect: str) -> str:
    """A plain read that says which server answered: MySQL's ``@@server_id``; PostgreSQL has
    none, the port the server listens on tells its nodes apart."""
    if dialect == "postgresql":
        return "SELECT current_setting('port')::int"
    return "SELECT @@server_id"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "example_fastapi_async_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


class NoteIn(BaseModel):
    body: str


def create_app(cluster: Cluster | None = None, secret_key: str | None = None) -> FastAPI:
    """The application; the cluster from ``RWSPLIT_*`` environment variables by default."""
    owned = cluster is None
    cluster = cluster if cluster is not None else Cluster.from_env()
    rw = RwSplit(
        cluster,
        secret_key=secret_key or os.environ["APP_SECRET_KEY"],
        # Async code cannot lazy-load expired attributes: keep them after commit.
        session_options={"expire_on_commit": False},
    )
    SessionDep = Annotated[AsyncSession, Depends(rw.async_session)]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with cluster.async_session() as session:  # DDL: on the primary
            await session.run_sync(lambda s: Base.metadata.create_all(s.connection()))
            await session.commit()
        yield
        if owned:
            await aclose_cluster(cluster)  # aiomysql connections close on the event loop

    app = FastAPI(lifespan=lifespan)
    rw.init_app(app)

    @app.post("/notes")
    async def create_note(new: NoteIn, session: SessionDep) -> RedirectResponse:
        note = Note(body=new.body)
        session.add(note)
        await session.commit()  # on the primary; the causal token goes into the cookie
        return RedirectResponse(f"/notes/{note.id}", status_code=303)

    @app.get("/notes/{note_id}")
    async def show_note(note_id: int, session: SessionDep) -> dict[str, Any]:
        note = await session.get(Note, note_id)  # never older than this browser's last write
        if note is None:
            raise HTTPException(404)
        return {"id": note.id, "body": note.body}

    @app.get("/whoami")
    async def whoami(session: SessionDep) -> dict[str, Any]:
        """Which server answers a plain read (a replica when nothing was written)."""
        sql = whoami_sql(cluster.write_engine().dialect.name)
        return {"server_id": (await session.execute(text(sql))).scalar_one()}

    return app
