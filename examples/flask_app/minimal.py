"""The whole Flask-SQLAlchemy set-up on a replicated cluster, and nothing else."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from rwsplit.flask import RwSplit


def make_app(primary: str, r1: str, r2: str, key: str) -> tuple[Flask, SQLAlchemy]:
    app = Flask(__name__)
    db = SQLAlchemy()
    app.config.update(RWSPLIT_PRIMARY_URL=primary, RWSPLIT_REPLICA_URLS=[r1, r2], SECRET_KEY=key)
    RwSplit(app, db=db)  # no SQLALCHEMY_DATABASE_URI, no db.init_app(app)
    return app, db
