"""The one beat process: sends each service its periodic housekeeping by
name (outbox relays, delivery retries). Beat imports no service."""
from celery import Celery
from celery.schedules import crontab

from . import contract
from .queueing import celery_settings
from .settings import data_dir, queue_config

celery_app = Celery("linli-beat")
celery_app.config_from_object(celery_settings(queue_config(), None))
# A sweep that waited longer than its period is stale (the next one is
# already coming): expiring it keeps a stopped worker's queue from filling.
EVERY = 5.0
celery_app.conf.beat_schedule = {
    name: {"task": name, "schedule": EVERY, "options": {"expires": EVERY * 2}}
    for name in (contract.RELAY_REQUESTS_OUTBOX, contract.RELAY_VOLUNTEERS_OUTBOX, contract.RELAY_NOTIFY_OUTBOX,
                 contract.RELAY_COMMUNITY_OUTBOX,
                 contract.RETRY_DELIVERIES, contract.SWEEP_DISPATCH, contract.VISITS_DUE)
}
# 08:00 in Hangzhou: the grid leaders' digest of open, overdue and escalated requests.
celery_app.conf.beat_schedule["daily-digest"] = {"task": contract.DAILY_DIGEST, "schedule": crontab(hour=0, minute=0),
                                                 "options": {"expires": 3600}}
# The follow-up (回访) is due a day after completion: looked for every 5 minutes.
celery_app.conf.beat_schedule["follow-up"] = {"task": contract.FOLLOW_UP, "schedule": 300.0,
                                              "options": {"expires": 300}}
# 03:00 in Hangzhou: residents' data of long-finished requests is anonymised.
celery_app.conf.beat_schedule["retention"] = {"task": contract.RETENTION, "schedule": crontab(hour=19, minute=0),
                                              "options": {"expires": 3600}}
# Kept with the data; written every tick, so its age tells a healthcheck
# that beat is alive.
data_dir().mkdir(parents=True, exist_ok=True)
celery_app.conf.beat_schedule_filename = str(data_dir() / "beat-schedule")
celery_app.conf.beat_sync_every = 1
