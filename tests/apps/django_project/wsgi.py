"""WSGI entry point: serve with `ringwsgi django_project.wsgi:application` from tests/apps."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
