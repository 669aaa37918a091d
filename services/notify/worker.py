"""Entry point of notification's Celery worker: celery -A services.notify.worker:celery_app worker -Q notify"""
from services.common.factory import check_before_serving

from . import create_app

flask_app = create_app()
check_before_serving(flask_app)
celery_app = flask_app.extensions["celery"]
