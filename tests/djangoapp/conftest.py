# These modules need a configured Django (tests.djangoapp.configure()): not doctest material.
collect_ignore = ["__init__.py", "apps.py", "models.py", "urls.py", "views.py"]
