"""Entry point of intake's Celery worker: celery -A services.requests.worker:celery_app worker -Q requests"""
from . import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
