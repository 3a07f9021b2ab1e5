"""Benchmarks of rwsplit's hot routing path, as ratios against baselines from the same run.

Run:  python benchmarks/bench_routing.py [--rounds 5] [--reads 2000]

Suite ``classify``: time per statement of rwsplit's classifier, uncached (lexer + rules) and
cached (lookup), next to ``sqlparse.parse(sql)[0].get_type()`` on the same statements (a corpus
of realistic application statements); then the cost of ``classify_clause()`` on a freshly
built ORM ``Select`` (cache key + lookup).

Suite ``session``: per-statement cost of a primary-key SELECT through a ``RoutingSession``
(classify + balance + replica engine) next to a plain SQLAlchemy ``Session`` bound straight to
one replica, over loopback against a sandbox cluster this script starts and stops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import sqlparse
from rwsplit.classify import _classify_text
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from rwsplit import Cluster, classify, classify_clause

# Realistic application statements: what SQLAlchemy's ORM and Core emit for a web shop (with
# its placeholders), plus hand-written SQL an application sends through text().
CORPUS = [
    "SELECT * FROM users WHERE id = 42",
    "SELECT u.id, u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id "
    "WHERE o.created_at > NOW() - INTERVAL 1 DAY ORDER BY o.total DESC LIMIT 10",
    "INSERT INTO orders (user_id, total, note) VALUES (1, 9.99, 'it''s; fine')",
    "UPDATE users SET last_login = NOW() WHERE id = 7",
    "DELETE FROM sessions WHERE expires_at < NOW()",
    "SELECT COUNT(*) FROM orders WHERE status IN ('new', 'paid') GROUP BY user_id",
    "/* app:checkout */ SELECT id FROM carts WHERE user_id = 3 FOR UPDATE",
    "SET NAMES utf8mb4",
    "SHOW TABLES",
    "SELECT LAST_INSERT_ID()",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > '2026-01-01') "
    "SELECT user_id, SUM(total) FROM recent GROUP BY user_id",
    "SELECT a FROM t WHERE b = 'x' UNION ALL SELECT a FROM u WHERE c LIKE '%y%'",
    "SELECT users.id AS users_id, users.name AS users_name, users.email AS users_email, "
    "users.created_at AS users_created_at \nFROM users \nWHERE users.id = %(pk_1)s",
    "SELECT products.id, products.sku, products.title, products.price, products.stock "
    "\nFROM products \nWHERE products.category_id = %(category_id_1)s AND products.stock > "
    "%(stock_1)s ORDER BY products.price ASC \n LIMIT %(param_1)s, %(param_2)s",
    "INSERT INTO order_items (order_id, product_id, qty, price) VALUES "
    "(%(order_id)s, %(product_id)s, %(qty)s, %(price)s)",
    "UPDATE products SET stock=(products.stock - %(stock_1)s) WHERE products.id = %(id_1)s",
    "SELECT count(*) AS count_1 \nFROM (SELECT orders.id AS orders_id \nFROM orders "
    "\nWHERE orders.user_id = %(user_id_1)s) AS anon_1",
    "SELECT `addresses`.`id`, `addresses`.`street`, `addresses`.`city` FROM `addresses` "
    "WHERE `addresses`.`user_id` IN (%(primary_keys_1)s, %(primary_keys_2)s)",
    "SELECT p.id, p.title, COALESCE(AVG(r.stars), 0) AS rating FROM products p "
    "LEFT JOIN reviews r ON r.product_id = p.id GROUP BY p.id HAVING rating >= 4",
    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
    "BEGIN",
    "COMMIT",
    "SELECT 1",
    "SELECT DATE_FORMAT(created_at, '%Y-%m') AS month, SUM(total) FROM orders "
    "WHERE created_at >= %(start)s GROUP BY month ORDER BY month",
    "SELECT GET_LOCK('nightly-report', 0)",
    "SELECT * FROM users WHERE email = 'a@b.c' -- login lookup",
    "EXPLAIN SELECT * FROM orders WHERE user_id = 5",
]


def per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def bench_classify(rounds: int) -> list[tuple[str, float]]:
    def uncached() -> None:
        for s in CORPUS:
            _classify_text.__wrapped__(s)

    def cached() -> None:
        for s in CORPUS:
            classify(s)

    def with_sqlparse() -> None:
        for s in CORPUS:
            sqlparse.parse(s)[0].get_type()

    cached()  # fill the cache
    results: dict[str, list[float]] = {"uncached": [], "cached": [], "sqlparse": []}
    for _ in range(rounds):
        results["sqlparse"].append(per_call(with_sqlparse, 20) / len(CORPUS))
        results["uncached"].append(per_call(uncached, 300) / len(CORPUS))
        results["cached"].append(per_call(cached, 20000) / len(CORPUS))
    return [(k, statistics.median(v)) for k, v in results.items()]


def bench_clause(rounds: int) -> list[tuple[str, float]]:
    """Cost of classify_clause() on a freshly built ORM Select (what an app does per request).

    classify_clause() looks the statement up by its SQLAlchemy cache key. The key is memoized
    on the statement and SQLAlchemy computes it anyway to find the compiled form, so the
    baseline includes it: the difference is what routing adds.
    """

    def build_and_key() -> None:
        select(Item).where(Item.id == 5)._generate_cache_key()

    def build_key_and_classify() -> None:
        stmt = select(Item).where(Item.id == 5)
        stmt._generate_cache_key()
        classify_clause(stmt)

    build_key_and_classify()
    cases = {
        "Select build + cache key": build_and_key,
        "  + classify_clause()": build_key_and_classify,
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(per_call(fn, 5000))
    return [(k, statistics.median(v)) for k, v in samples.items()]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


def bench_session(rounds: int, reads: int) -> list[tuple[str, float]]:
    from rwsplit.sandbox import Sandbox

    print("starting a sandbox cluster ...", file=sys.stderr)
    with (
        Sandbox(2, progress=lambda m: print(f"  .. {m}", file=sys.stderr)) as sb,
        Cluster(sb.primary_url, sb.replica_urls) as cluster,
    ):
        Base.metadata.create_all(cluster.write_engine())
        with Session(cluster.write_engine()) as s:
            s.add_all(Item(id=i, name=f"item{i}") for i in range(1, 1001))
            s.commit()
        sb.wait_caught_up()
        plain_engine = create_engine(sb.replica_urls[0])
        # rwsplit's replica engine settings, without the routing: isolates routing's own cost.
        plain_autocommit = create_engine(
            sb.replica_urls[0], isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True
        )
        routing = cluster.sessionmaker()
        one_replica = Cluster(sb.primary_url, sb.replica_urls[:1])
        routing_one = one_replica.sessionmaker()

        def run(make: Callable[[], Session]) -> Callable[[], None]:
            def one_round() -> None:
                for k in range(reads):
                    with make() as s:
                        s.execute(select(Item).where(Item.id == k % 1000 + 1)).scalar_one()

            return one_round

        cases = {
            "plain Session, one replica": run(lambda: Session(plain_engine)),
            "plain Session, rwsplit's settings": run(lambda: Session(plain_autocommit)),
            "RoutingSession, same replica": run(routing_one),
            "RoutingSession, 2 replicas": run(routing),
        }
        for fn in cases.values():  # warm pools and caches
            fn()
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for i in range(rounds):
            print(f"  .. round {i + 1}/{rounds}", file=sys.stderr)
            for name, fn in cases.items():  # interleaved: drift hits every case alike
                samples[name].append(per_call(fn, 1) / reads)
        plain_engine.dispose()
        plain_autocommit.dispose()
        one_replica.close()
        return [(k, statistics.median(v)) for k, v in samples.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (median taken)")
    parser.add_argument("--reads", type=int, default=2000, help="SELECTs per round")
    parser.add_argument("--suite", choices=["all", "classify", "session"], default="all")
    args = parser.parse_args()

    if args.suite in ("all", "classify"):
        rows = bench_classify(args.rounds)
        base = dict(rows)["sqlparse"]
        print(f"\nclassification, per statement (corpus of {len(CORPUS)})")
        print(f"{'case':<34} {'time':>12} {'sqlparse / case':>16}")
        for name, t in rows:
            print(f"{name:<34} {t * 1e6:>10.2f}us {base / t:>15.1f}x")
        rows = bench_clause(args.rounds)
        print("\nSQLAlchemy Select construct, per statement")
        for name, t in rows:
            print(f"{name:<34} {t * 1e6:>10.2f}us")
        print(f"{'routing adds':<34} {(rows[1][1] - rows[0][1]) * 1e6:>10.2f}us")
    if args.suite in ("all", "session"):
        rows = bench_session(args.rounds, args.reads)
        base = dict(rows)["plain Session, one replica"]
        same = dict(rows)["plain Session, rwsplit's settings"]
        print("\nprimary-key SELECT over loopback, per statement (session per statement)")
        print(f"{'case':<34} {'time':>12} {'vs plain':>10} {'vs same settings':>17}")
        for name, t in rows:
            print(f"{name:<34} {t * 1e6:>10.1f}us {t / base:>10.3f} {t / same:>17.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
