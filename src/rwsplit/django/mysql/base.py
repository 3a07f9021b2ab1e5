"""Django imports the backend from here for ``"ENGINE": "rwsplit.django.mysql"``."""

from __future__ import annotations

from ..base import Database, DatabaseWrapper, RoutingCursor, django_error

__all__ = ["Database", "DatabaseWrapper", "RoutingCursor", "django_error"]
