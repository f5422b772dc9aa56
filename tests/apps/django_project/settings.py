"""Minimal Django settings: no database, no apps needing one."""
SECRET_KEY = "ringwsgi-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "django_project.urls"
DATABASES = {}
TEMPLATES = []
USE_TZ = True
USE_I18N = False
APPEND_SLASH = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
