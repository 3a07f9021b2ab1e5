from __future__ import annotations

from django.apps import AppConfig


class DjangoAppConfig(AppConfig):
    name = "tests.djangoapp"
    label = "rwsplit_tests"
