"""``"ENGINE": "rwsplit.django.postgresql"``: Django on a PostgreSQL primary and its hot
standbys (:mod:`rwsplit.django.postgresql.base`)."""
