"""A FastAPI app on a replicated cluster: routed sessions as dependencies, read-your-writes
across requests through a signed cookie.

Run it against a local sandbox cluster, from a checkout (PORT, PORT2: from the URLs
``sandbox up`` prints; the tables are created when the app starts)::

    pip install -e '.[fastapi]' uvicorn
    cd examples/fastapi_app
    rwsplit sandbox up                        # prints the primary and replica URLs
    export RWSPLIT_PRIMARY_URL=mysql+pymysql://root@127.0.0.1:PORT/rwsplit
    export RWSPLIT_REPLICA_URLS=mysql+pymysql://root@127.0.0.1:PORT2/rwsplit
    export APP_SECRET_KEY=change-me
    uvicorn --factory app:create_app          # or: gunicorn -k uvicorn.workers.UvicornWorker
    curl -si -H 'Content-Type: application/json' -d '{"body": "hi"}' http://127.0.0.1:8000/notes
    rwsplit sandbox down

``POST /notes`` commits on the primary and redirects (303) to ``GET /notes/{id}``, which reads
a replica that has applied the write, or the primary.
"""

# No "from __future__ import annotations": FastAPI reads the annotations of the endpoints
# (SessionDep is local to create_app) at run time.

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy import String, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import Cluster, RoutingSession
from rwsplit.fastapi import RwSplit


def whoami_sql(dialect: str) -> str:
    """A plain read that says which server answered: MySQL's ``@@server_id``; PostgreSQL has
    none, the port the server listens on tells its nodes apart."""
    if dialect == "postgresql":
        return "SELECT current_setting('port')::int"
    return "SELECT @@server_id"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "example_fastapi_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


class NoteIn(BaseModel):
    body: str


def init_db(cluster: Cluster) -> None:
    """Create the tables (DDL on the primary)."""
    Base.metadata.create_all(cluster.write_engine())


def create_app(cluster: Cluster | None = None, secret_key: str | None = None) -> FastAPI:
    """The application; the cluster from ``RWSPLIT_*`` environment variables by default."""
    owned = cluster is None
    cluster = cluster if cluster is not None else Cluster.from_env()
    rw = RwSplit(cluster, secret_key=secret_key or os.environ["APP_SECRET_KEY"])
    SessionDep = Annotated[RoutingSession, Depends(rw.session)]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        init_db(cluster)  # CREATE TABLE IF NOT EXISTS, on the primary
        yield
        if owned:
            cluster.close()

    app = FastAPI(lifespan=lifespan)
    rw.init_app(app)

    @app.post("/notes")
    def create_note(new: NoteIn, session: SessionDep) -> RedirectResponse:
        note = Note(body=new.body)
        session.add(note)
        session.commit()  # on the primary; the causal token goes into the response's cookie
        return RedirectResponse(f"/notes/{note.id}", status_code=303)

    @app.get("/notes/{note_id}")
    def show_note(note_id: int, session: SessionDep) -> dict[str, Any]:
        note = session.get(Note, note_id)  # never older than this browser's last write
        if note is None:
            raise HTTPException(404)
        return {"id": note.id, "body": note.body}

    @app.get("/notes")
    def count_notes(session: SessionDep) -> dict[str, Any]:
        return {"count": session.scalar(select(func.count()).select_from(Note))}

    @app.get("/whoami")
    def whoami(session: SessionDep) -> dict[str, Any]:
        """Which server answers a plain read (a replica when nothing was written)."""
        sql = whoami_sql(cluster.write_engine().dialect.name)
        return {"server_id": session.execute(text(sql)).scalar_one()}

    return app
