"""Helpers of the PostgreSQL integration tests."""

from __future__ import annotations

import time

from rwsplit.sandbox.postgresql import PgNode


def set_setting(node: PgNode, name: str, value: str | None, timeout: float = 10.0) -> None:
    """``ALTER SYSTEM SET name = value`` (``None``: ``RESET``) and a reload on *node*, as an
    operator or another process would; return once the reload took effect.

    ``pg_reload_conf()`` only signals the postmaster: a new connection that sees the new value
    proves the postmaster re-read the configuration and signalled every backend and the
    startup process, which apply it before their next statement / record.
    """
    if not name.replace("_", "").isalpha():
        raise ValueError(name)
    with node.connect() as admin:
        if value is None:
            admin.execute(f"ALTER SYSTEM RESET {name}")
        else:
            admin.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        admin.execute("SELECT pg_reload_conf()")
        default = admin.execute(
            "SELECT boot_val FROM pg_settings WHERE name = %s", (name,)
        ).fetchone()
    wanted = value if value is not None else (default[0] if default else None)
    deadline = time.monotonic() + timeout
    while True:
        with node.connect() as conn:
            row = conn.execute(
                "SELECT setting FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()
        if row is not None and row[0] == wanted:
            return
        assert time.monotonic() < deadline, f"{node.name}: {name} is {row}, not {wanted}"
        time.sleep(0.01)


def set_read_only_default(node: PgNode, on: bool) -> None:
    """Fence (or unfence) *node*: ``default_transaction_read_only``, reloaded."""
    set_setting(node, "default_transaction_read_only", "on" if on else None)
