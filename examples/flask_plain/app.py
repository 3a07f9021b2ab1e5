"""Flask without Flask-SQLAlchemy: ``ext.session`` is a routed session per request.

The session is created on first use in a request (continuing the browser's causal chain from
the cookie) and removed when the request ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, redirect, request
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.wrappers import Response

from rwsplit.flask import RwSplit

rw = RwSplit()


def whoami_sql(dialect: str) -> str:
    """A plain read that says which server answered: MySQL's ``@@server_id``; PostgreSQL has
    none, the port the server listens on tells its nodes apart."""
    if dialect == "postgresql":
        return "SELECT current_setting('port')::int"
    return "SELECT @@server_id"


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "example_flask_plain_counters"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    app.config.update(config or {})
    rw.init_app(app)

    @app.post("/counters/<name>")
    def bump(name: str) -> Response:
        counter = rw.session.get(Counter, name) or Counter(name=name, value=0)
        counter.value += int(request.form.get("by", 1))
        rw.session.add(counter)
        rw.session.commit()  # on the primary
        return redirect(f"/counters/{name}")

    @app.get("/counters/<name>")
    def show(name: str) -> dict[str, Any]:
        value = rw.session.scalar(select(Counter.value).where(Counter.name == name))
        return {"name": name, "value": value}

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        sql = whoami_sql(rw.cluster.write_engine().dialect.name)
        return {"server_id": rw.session.execute(text(sql)).scalar_one()}

    return app
