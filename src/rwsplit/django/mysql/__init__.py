"""``"ENGINE": "rwsplit.django.mysql"``: the MySQL / MariaDB backend, by its explicit name.

The same backend as ``"rwsplit.django"`` (:mod:`rwsplit.django.base`).
"""
