"""Entry point of matching's Celery worker: celery -A services.volunteers.worker:celery_app worker -Q volunteers"""
from . import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
