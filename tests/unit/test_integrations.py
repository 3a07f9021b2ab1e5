"""The patterns in docs/integrations.md route as documented (no server needed)."""

from __future__ import annotations

from sqlalchemy import column, insert, select, table
from sqlalchemy.orm import scoped_session

from rwsplit import Cluster, RoutingSession

T = table("orders", column("id"), column("total"))


def test_scoped_session_gives_routing_sessions() -> None:
    with Cluster("mysql+pymysql://u:p@db1/app", ["mysql+pymysql://u:p@db2/app"]) as c:
        Session = scoped_session(c.sessionmaker())
        try:
            s = Session()
            assert isinstance(s, RoutingSession)
            assert s is Session()  # one per thread / request
            assert s.get_bind(clause=select(T)).url.host == "db2"
            assert s.get_bind(clause=insert(T)).url.host == "db1"
        finally:
            Session.remove()


def test_sessionmaker_passes_session_options() -> None:
    with Cluster("mysql+pymysql://u:p@db1/app", ["mysql+pymysql://u:p@db2/app"]) as c:
        s = c.sessionmaker(expire_on_commit=False)()
        assert s.expire_on_commit is False
        assert s.cluster is c
