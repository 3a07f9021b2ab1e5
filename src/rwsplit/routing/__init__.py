"""Where does this statement go? Framework-neutral routing.

* :mod:`.classify` — SQL text / SQLAlchemy construct → :class:`Classification` (pure, cached);
  :mod:`.classify_pg` the same for PostgreSQL (``classify(sql, dialect="postgresql")``);
* :mod:`.router` — the routing state of one unit of work (sticky-after-write, pins, read-only
  transactions, overrides, read-your-writes decisions), with no SQLAlchemy session or Django
  connection in it;
* :mod:`.balance` — which replica takes a read; :mod:`.consistency` — read-your-writes.

Adapters (:mod:`rwsplit.integrations`) map the router's decisions onto a framework.
"""
