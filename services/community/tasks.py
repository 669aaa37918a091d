"""The community service's consumers: the office's register changes from
the console (intake), and from beat the outbox relay."""
from __future__ import annotations

from celery import shared_task

from services.common import contract
from services.common import extensions as ext


@shared_task(name=contract.RELAY_COMMUNITY_OUTBOX)
def relay_outbox():
    return ext.outbox().relay()
