"""Races, against PostgreSQL (where writers really run at once): many
volunteers accepting one broadcast request, and one volunteer accepting
many offers at once. Exactly one assignment; never over capacity."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from services.volunteers.dispatch import Dispatcher
from services.volunteers.models import Assignment, Offer, ServiceRequest, Volunteer
from tests.factories import NOW, World, register, submitted

RACERS = 12


def race(app, offer_ids):
    """Each offer accepted from its own thread and connection, all released at once."""
    barrier = threading.Barrier(len(offer_ids))
    results = []
    # A connection per racer (the service's own pool is smaller than the crowd).
    engine = create_engine(app.config["DATABASE_URL"], pool_size=len(offer_ids), max_overflow=0)

    def accept(offer_id):
        with Session(engine) as session:
            offer = session.get(Offer, offer_id)
            barrier.wait()
            outcome = Dispatcher(session, app.extensions["outbox"], app.config, now=NOW).accept(offer)
            if outcome != "accepted":
                session.rollback()  # a lost race, as the offer page does
            session.commit()
            results.append(outcome)

    threads = [threading.Thread(target=accept, args=(oid,)) for oid in offer_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    engine.dispose()
    assert len(results) == len(offer_ids), "a racer failed"
    return results


def test_many_accepts_of_one_broadcast_request_make_one_assignment(make_app):
    app = make_app("volunteers", backend="postgresql",
                   DISPATCH_POLICIES={"haircut": {"policy": "broadcast", "broadcast_k": RACERS}})
    world = World(app)
    for i in range(RACERS):
        register(app, building=str(i + 1), capacity=2)
    req = world.receive(submitted())
    offers = world.offers(req.id)
    assert len(offers) == RACERS
    results = race(app, [o.id for o in offers])
    assert sorted(results).count("accepted") == 1
    assert set(results) <= {"accepted", "taken", "closed"}
    with Session(app.extensions["db"].engine) as s:
        assert s.scalar(select(func.count()).select_from(Assignment)) == 1
        assert s.scalar(select(func.sum(Volunteer.active_tasks))) == 1
        assert s.get(ServiceRequest, req.id).status == "assigned"
    world.session.close()


def test_one_volunteer_accepting_many_offers_at_once_stays_within_capacity(make_app):
    app = make_app("volunteers", backend="postgresql")
    world = World(app)
    vid = register(app, capacity=3)
    # Offers made over time (say, before a capacity change), all open now.
    requests = [world.receive(submitted(unit=str(1 + i % 2)), NOW + timedelta(minutes=i)) for i in range(RACERS)]
    for req in requests:
        if not world.offers(req.id):
            world.session.add(Offer(request_id=req.id, volunteer_id=vid, created_at=NOW,
                                    expires_at=NOW + timedelta(hours=1), token=uuid.uuid4().hex))
    world.session.commit()
    offers = [o for o in world.offers() if o.status == "open"]
    assert len(offers) == RACERS
    results = race(app, [o.id for o in offers])
    assert results.count("accepted") == 3 and results.count("full") == RACERS - 3
    with Session(app.extensions["db"].engine) as s:
        assert s.get(Volunteer, vid).active_tasks == 3
        assert s.scalar(select(func.count()).select_from(Assignment)) == 3
    world.session.close()
