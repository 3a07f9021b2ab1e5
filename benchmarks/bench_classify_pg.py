"""The PostgreSQL classifier's speed next to the MySQL classifier's, in the same run.

Run:  python benchmarks/bench_classify_pg.py [--rounds 7]

Both classifiers, uncached (lexer and rules; the cache's lookup is the same code for both),
on the same application statements: the MySQL corpus of ``bench_routing.py`` and its
PostgreSQL translation (double-quoted names, ``lastval()`` for ``LAST_INSERT_ID()``,
``pg_advisory_lock`` for ``GET_LOCK``, ``to_char`` for ``DATE_FORMAT`` ...), one for one. Also
the real corpus of ``tests/data/pg_corpus.sql`` (Django, SQLAlchemy, pgbench, the manual),
which has no MySQL twin. Prints time per statement and the ratio PostgreSQL / MySQL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rwsplit.routing.classify import _classify_uncached as mysql_uncached
from rwsplit.routing.classify_pg import _classify_uncached as pg_uncached

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from bench_routing import CORPUS as MYSQL_CORPUS
from tests.pg_corpus import pg_corpus

# bench_routing.CORPUS, statement for statement, as a PostgreSQL application writes it.
PG_CORPUS = [
    "SELECT * FROM users WHERE id = 42",
    "SELECT u.id, u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id "
    "WHERE o.created_at > now() - interval '1 day' ORDER BY o.total DESC LIMIT 10",
    "INSERT INTO orders (user_id, total, note) VALUES (1, 9.99, 'it''s; fine')",
    "UPDATE users SET last_login = now() WHERE id = 7",
    "DELETE FROM sessions WHERE expires_at < now()",
    "SELECT count(*) FROM orders WHERE status IN ('new', 'paid') GROUP BY user_id",
    "/* app:checkout */ SELECT id FROM carts WHERE user_id = 3 FOR UPDATE",
    "SET search_path TO shop, public",
    "SHOW search_path",
    "SELECT lastval()",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > '2026-01-01') "
    "SELECT user_id, sum(total) FROM recent GROUP BY user_id",
    "SELECT a FROM t WHERE b = 'x' UNION ALL SELECT a FROM u WHERE c LIKE '%y%'",
    "SELECT users.id AS users_id, users.name AS users_name, users.email AS users_email, "
    "users.created_at AS users_created_at \nFROM users \nWHERE users.id = %(pk_1)s::INTEGER",
    "SELECT products.id, products.sku, products.title, products.price, products.stock "
    "\nFROM products \nWHERE products.category_id = %(category_id_1)s AND products.stock > "
    "%(stock_1)s ORDER BY products.price ASC \n LIMIT %(param_1)s OFFSET %(param_2)s",
    "INSERT INTO order_items (order_id, product_id, qty, price) VALUES "
    "(%(order_id)s, %(product_id)s, %(qty)s, %(price)s)",
    "UPDATE products SET stock=(products.stock - %(stock_1)s) WHERE products.id = %(id_1)s",
    "SELECT count(*) AS count_1 \nFROM (SELECT orders.id AS orders_id \nFROM orders "
    "\nWHERE orders.user_id = %(user_id_1)s) AS anon_1",
    'SELECT "addresses"."id", "addresses"."street", "addresses"."city" FROM "addresses" '
    'WHERE "addresses"."user_id" IN (%(primary_keys_1)s, %(primary_keys_2)s)',
    "SELECT p.id, p.title, coalesce(avg(r.stars), 0) AS rating FROM products p "
    "LEFT JOIN reviews r ON r.product_id = p.id GROUP BY p.id HAVING avg(r.stars) >= 4",
    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
    "BEGIN",
    "COMMIT",
    "SELECT 1",
    "SELECT to_char(created_at, 'YYYY-MM') AS month, sum(total) FROM orders "
    "WHERE created_at >= %(start)s GROUP BY month ORDER BY month",
    "SELECT pg_advisory_lock(hashtext('nightly-report'))",
    "SELECT * FROM users WHERE email = 'a@b.c' -- login lookup",
    "EXPLAIN SELECT * FROM orders WHERE user_id = 5",
]
assert len(PG_CORPUS) == len(MYSQL_CORPUS)


def per_statement(fn: Callable[[str], object], corpus: list[str]) -> float:
    """CPU time per statement of ``fn`` over *corpus* (about 20,000 calls)."""
    n = max(1, 20000 // len(corpus))
    t0 = time.process_time()
    for _ in range(n):
        for s in corpus:
            fn(s)
    return (time.process_time() - t0) / (n * len(corpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    real = pg_corpus()
    cases: dict[str, tuple[Callable[[str], object], list[str]]] = {
        "MySQL classifier, bench_routing corpus": (mysql_uncached, MYSQL_CORPUS),
        "PostgreSQL classifier, its translation": (pg_uncached, PG_CORPUS),
        f"PostgreSQL classifier, pg_corpus ({len(real)})": (pg_uncached, real),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):  # interleaved: load changes hit every case alike
        for name, (fn, corpus) in cases.items():
            times[name].append(per_statement(fn, corpus))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["MySQL classifier, bench_routing corpus"]
    print(f"\nclassification, uncached, CPU time per statement, median of {args.rounds} rounds")
    print(f"{'case':<44} {'time':>10} {'/ MySQL':>9}")
    for name, t in medians.items():
        print(f"{name:<44} {t * 1e6:>8.2f}us {t / base:>8.2f}x")


if __name__ == "__main__":
    main()
