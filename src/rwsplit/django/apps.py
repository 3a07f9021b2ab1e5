"""Add ``"rwsplit.django"`` to ``INSTALLED_APPS`` for the ``rwsplit_topology`` command."""

from __future__ import annotations

from django.apps import AppConfig


class RwSplitConfig(AppConfig):  # type: ignore[misc]
    name = "rwsplit.django"
    label = "rwsplit"
    verbose_name = "rwsplit"
