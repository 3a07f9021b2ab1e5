"""A Flask-SQLAlchemy app on a replicated cluster: the whole set-up is ``RwSplit(app, db=db)``.

Run it against a local sandbox cluster, from a checkout (PORT, PORT2: from the URLs
``sandbox up`` prints)::

    pip install -e '.[flask]' gunicorn
    cd examples/flask_app
    rwsplit sandbox up                        # prints the primary and replica URLs
    export FLASK_RWSPLIT_PRIMARY_URL=mysql+pymysql://root@127.0.0.1:PORT/rwsplit
    export FLASK_RWSPLIT_REPLICA_URLS=mysql+pymysql://root@127.0.0.1:PORT2/rwsplit
    export FLASK_SECRET_KEY=change-me
    flask --app app init-db
    gunicorn -w 2 'app:create_app()'
    curl -si -d body=hi http://127.0.0.1:8000/notes
    rwsplit sandbox down

``POST /notes`` commits on the primary and redirects to ``GET /notes/<id>``, which reads a
replica that has applied the write (the causal-token cookie), or the primary.
``GET /notes?page=N`` pages through the notes on the replicas.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, redirect, request, url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.wrappers import Response

from rwsplit.flask import RwSplit


def whoami_sql(dialect: str) -> str:
    """A plain read that says which server answered: MySQL's ``@@server_id``; PostgreSQL has
    none, the port the server listens on tells its nodes apart."""
    if dialect == "postgresql":
        return "SELECT current_setting('port')::int"
    return "SELECT @@server_id"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Note(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "example_flask_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application; settings from ``FLASK_*`` environment variables, then *config*."""
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_RWSPLIT_PRIMARY_URL -> RWSPLIT_PRIMARY_URL ...
    app.config.update(config or {})
    RwSplit(app, db=db)  # no SQLALCHEMY_DATABASE_URI, no db.init_app(app)

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the tables (DDL runs on the primary)."""
        db.create_all()

    @app.post("/notes")
    def create_note() -> Response:
        note = Note(body=request.form["body"])
        db.session.add(note)
        db.session.commit()  # on the primary; the causal token goes into a cookie
        return redirect(url_for("show_note", note_id=note.id))

    @app.get("/notes/<int:note_id>")
    def show_note(note_id: int) -> dict[str, Any]:
        note = db.get_or_404(Note, note_id)  # never older than this browser's last write
        return {"id": note.id, "body": note.body}

    @app.get("/notes/<int:note_id>/legacy")
    def show_note_legacy(note_id: int) -> dict[str, Any]:
        note = Note.query.filter_by(id=note_id).first_or_404()  # Model.query routes too
        return {"id": note.id, "body": note.body}

    @app.get("/notes")
    def list_notes() -> dict[str, Any]:
        page = db.paginate(select(Note).order_by(Note.id), per_page=10)
        return {
            "page": page.page,
            "total": page.total,
            "has_next": page.has_next,
            "bodies": [n.body for n in page.items],
        }

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        """Which server answers a plain read (a replica when nothing was written)."""
        server_id = db.session.execute(text(whoami_sql(db.engine.dialect.name))).scalar_one()
        return {"server_id": server_id, "worker_pid": os.getpid()}

    return app
