"""Thin adapters of :mod:`rwsplit.routing` onto frameworks.

:mod:`.sqlalchemy` (``RoutingSession``), and the optional ones that import their framework
only when used: asyncio sessions, Flask, Django, the pytest plugin. The decisions live in the
routing core; an adapter maps them onto its framework's connections.
"""
