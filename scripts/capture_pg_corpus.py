"""Capture the SQL that Django and SQLAlchemy really send to PostgreSQL, for the corpus.

Run:  python scripts/capture_pg_corpus.py > /tmp/captured.sql

Starts a PostgreSQL sandbox primary (no standby), runs Django's ``migrate`` for its contrib
apps and a set of ORM operations, then SQLAlchemy's connect-time queries, reflection, Core
and ORM statements, and prints every statement they sent, parameters inlined by psycopg's own
client-side binding (``ClientCursor.mogrify``), one per entry, ending with ``;``. The output
was pasted, lightly trimmed, into ``tests/data/pg_corpus.sql`` (the sections marked
"captured").
"""

from __future__ import annotations

import sys
from typing import Any

from rwsplit.sandbox.postgresql import DATABASE, USER, PgSandbox

captured: list[str] = []


def django_part(sb: PgSandbox) -> None:
    import django
    from django.conf import settings

    node = sb.primary
    settings.configure(
        DEBUG=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": DATABASE,
                "USER": USER,
                "PASSWORD": sb.password,
                "HOST": node.host,
                "PORT": node.port,
            }
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.models import Group, Permission, User
    from django.core.management import call_command
    from django.db import connection, reset_queries, transaction
    from django.db.models import Count, F, Q

    call_command("migrate", verbosity=0, skip_checks=True)
    captured.extend(q["sql"] for q in connection.queries)
    reset_queries()
    alice = User.objects.create_user("alice", "alice@example.com", "pw")
    User.objects.create_user("bob", "bob@example.com", "pw")
    g, _ = Group.objects.get_or_create(name="editors")
    g.permissions.add(*Permission.objects.filter(codename__startswith="change_")[:3])
    alice.groups.add(g)
    list(User.objects.filter(username="alice"))
    list(User.objects.filter(Q(is_staff=True) | Q(email__icontains="example")).order_by("-id")[:5])
    list(User.objects.select_related().prefetch_related("groups__permissions"))
    list(Group.objects.annotate(n=Count("user")).filter(n__gt=0))
    User.objects.filter(pk=alice.pk).update(last_name=F("first_name"))
    User.objects.filter(username="alice").exists()
    list(User.objects.values_list("username", flat=True).distinct())
    with transaction.atomic():
        list(User.objects.select_for_update().filter(pk=alice.pk))
        list(User.objects.select_for_update(no_key=True, skip_locked=True).filter(pk=alice.pk))
        list(User.objects.select_for_update(of=("self",), nowait=True).filter(pk=alice.pk))
        with transaction.atomic():
            alice.first_name = "Alice"
            alice.save()
    list(User.objects.all().iterator(chunk_size=10))
    User.objects.bulk_create([User(username=f"u{i}") for i in range(3)])
    User.objects.filter(username__startswith="u").delete()
    captured.extend(q["sql"] for q in connection.queries)
    connection.close()


def sqlalchemy_part(sb: PgSandbox) -> None:
    import psycopg
    from sqlalchemy import (
        Column,
        ForeignKey,
        Integer,
        MetaData,
        Sequence,
        String,
        Table,
        create_engine,
        delete,
        event,
        func,
        insert,
        inspect,
        literal,
        select,
        text,
        update,
    )
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    url = sb.primary_url
    engine = create_engine(url)
    mog = psycopg.ClientCursor(sb.primary.connect())

    @event.listens_for(engine, "before_cursor_execute")
    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        try:
            captured.append(mog.mogrify(statement, parameters or None))
        except Exception:
            captured.append(statement)

    md = MetaData()
    author = Table(
        "sa_author",
        md,
        Column("id", Integer, Sequence("sa_author_id_seq"), primary_key=True),
        Column("name", String(50), nullable=False),
    )
    book = Table(
        "sa_book",
        md,
        Column("id", Integer, primary_key=True),
        Column("author_id", ForeignKey("sa_author.id")),
        Column("title", String(200)),
        Column("price", Integer),
    )
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(insert(author).values(name="Ann"))
        c.execute(insert(author), [{"name": "Bo"}, {"name": "Cy"}])
        c.execute(insert(book).values(author_id=1, title="SQL", price=10).returning(book.c.id))
        c.execute(
            pg_insert(book)
            .values(id=1, author_id=1, title="SQL 2", price=12)
            .on_conflict_do_update(index_elements=["id"], set_={"title": "SQL 2"})
        )
        c.execute(pg_insert(book).values(id=1, title="x").on_conflict_do_nothing())
        c.execute(update(book).where(book.c.id == 1).values(price=book.c.price + 1))
        c.execute(select(author).where(author.c.name.ilike("a%")).order_by(author.c.id).limit(5))
        j = author.join(book)
        c.execute(
            select(author.c.name, func.count(book.c.id), func.coalesce(func.sum(book.c.price), 0))
            .select_from(j)
            .group_by(author.c.name)
            .having(func.count(book.c.id) > 0)
        )
        c.execute(select(book).with_for_update())
        c.execute(select(book).with_for_update(key_share=True))
        c.execute(select(book).with_for_update(read=True, skip_locked=True, of=book))
        c.execute(select(book).with_for_update(nowait=True))
        cte = (
            select(book.c.author_id, func.max(book.c.price).label("m"))
            .group_by(book.c.author_id)
            .cte("m")
        )
        c.execute(select(author.c.name, cte.c.m).join(cte, cte.c.author_id == author.c.id))
        c.execute(
            select(
                book.c.title,
                func.row_number().over(partition_by=book.c.author_id, order_by=book.c.price),
            )
        )
        c.execute(select(func.now(), func.current_date(), literal(1)))
        c.execute(select(author.c.id).where(author.c.id.in_([1, 2, 3])))
        c.execute(select(author).distinct(author.c.name))
        c.execute(select(Sequence("sa_author_id_seq").next_value()))
        c.execute(delete(book).where(book.c.price > 100).returning(book.c.id))
        c.execute(text("SELECT * FROM sa_book WHERE title = :t"), {"t": "it's"})
    insp = inspect(engine)
    insp.get_table_names()
    insp.get_columns("sa_book")
    insp.get_pk_constraint("sa_book")
    insp.get_foreign_keys("sa_book")
    insp.get_indexes("sa_book")
    insp.get_unique_constraints("sa_book")
    insp.has_table("sa_book")
    insp.has_sequence("sa_author_id_seq")
    md.drop_all(engine)
    engine.dispose()


def main() -> None:
    with PgSandbox(standbys=0) as sb:
        django_part(sb)
        sqlalchemy_part(sb)
    seen: set[str] = set()
    for sql in captured:
        sql = sql.strip()
        if sql and sql not in seen:
            seen.add(sql)
            sys.stdout.write(sql.rstrip(";") + ";\n")


if __name__ == "__main__":
    main()
