"""Entry point of the community service's Celery worker:
celery -A services.community.worker:celery_app worker -Q community"""
from services.common.factory import check_before_serving

from . import create_app

flask_app = create_app()
check_before_serving(flask_app)
celery_app = flask_app.extensions["celery"]
