"""Entry point of notification's Celery worker: celery -A services.notify.worker:celery_app worker -Q notify"""
from . import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
