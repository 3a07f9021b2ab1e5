"""Run with ``manage.py test``: the test database is made on the primary and replicated."""

import threading

from django.db import connection, connections
from django.test import TransactionTestCase

from .models import Order


class OrderFlowTests(TransactionTestCase):
    def test_replica_has_the_test_schema_and_reads_the_write(self):
        Order.objects.create(item="book", quantity=2)
        # Autocommit read right after the write: read-your-writes on a replica (or primary).
        self.assertEqual(Order.objects.get(item="book").quantity, 2)

    def test_another_thread_reads_from_a_replica(self):
        Order.objects.create(item="pen")
        result = {}

        def read():
            try:
                # Another thread: another connection, no causal token. The replica has the
                # test database's schema (the runner waited for it) and, once caught up, the row.
                result["tables"] = connections["default"].introspection.table_names()
                result["routed"] = dict(connections["default"].routed)
            finally:
                connections["default"].close()

        t = threading.Thread(target=read)
        t.start()
        t.join(30)
        self.assertIn("orders_order", result["tables"])
        replicas = {n.name for n in connection.cluster.topology.replicas}
        self.assertTrue(set(result["routed"]) & replicas, result["routed"])
