"""The console as a desk tool (#16): requests handed to a named leader
(and "handed to me"), time coins spent and the monthly hours record,
a volunteer's message channels removed — each from the console's form to
the service that owns the data."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from services.requests.models import ServiceRequest, StaffMember
from tests.conftest import csrf_token
from tests.factories import RESIDENT, add_staff, staff_signed_in

G1_BUILDING, G2_BUILDING = "3", "14"  # grids G1 and G2 of the demo community


@pytest.fixture
def app(make_app):
    return make_app("requests", setup=add_staff)


def submit(app, building, **changes) -> str:
    resp = app.test_client().post("/api/v1/requests", json={**RESIDENT, "building": building, **changes})
    assert resp.status_code == 201, resp.text
    return resp.get_json()["id"]


def actor_of(app, username) -> str:
    with app.app_context():
        return app.extensions["db"].Session.scalar(
            select(StaffMember).where(StaffMember.username == username)).actor


def handler_of(app, request_id) -> str | None:
    with app.app_context():
        s = app.extensions["db"].Session
        s.expire_all()
        return s.get(ServiceRequest, request_id).handler


def hand_over(client, ids, handler, query=""):
    token = csrf_token(client.get("/staff/").text)
    return client.post(f"/staff/bulk{query}", data={"ids": ids, "action": "hand_over", "handler": handler,
                                                    "csrf_token": token})


def waiting_badge(page: str) -> int:
    found = re.search(r'id="waiting-count"[^>]*>([^<]*)<', page)
    return int(re.search(r"\d+", found.group(1)).group()) if found else 0


def queue_ids(page: str) -> list[str]:
    table = page.split('id="queue"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'data-request="([0-9a-f-]{36})"', table)


# --- handing requests to a named leader ---


def test_the_office_hands_requests_to_a_named_hallway_leader_who_finds_them_as_theirs(app):
    a, b = submit(app, G1_BUILDING), submit(app, G1_BUILDING)
    hall, admin = actor_of(app, "hall"), staff_signed_in(app, "admin")
    chooser = admin.get("/staff/").text.split('id="handler"', 1)[1].split("</select>", 1)[0]
    # The named grid and hallway leaders, by name and role in words; the office itself is not one.
    assert "3幢1单元楼道长" in chooser and "一网格" in chooser and "二网格" in chooser
    assert "社区办公室" not in chooser and "hallway_leader" not in chooser.split(">", 1)[1]
    resp = hand_over(admin, [a], hall, query="?sort=due")
    back = resp.headers["Location"]
    assert resp.status_code == 303 and "done=handed" in back and "sort=due" in back
    assert handler_of(app, a) == hall and handler_of(app, b) is None
    # Shown on the queue and on the request page, as a name; the timeline says who handed it.
    row = admin.get("/staff/").text.split(f'data-request="{a}"', 1)[1].split("</tr>", 1)[0]
    assert "3幢1单元楼道长" in row
    detail = admin.get(f"/staff/requests/{a}").text
    assert "3幢1单元楼道长" in detail.split('id="handler"', 1)[1].split("</dd>", 1)[0]
    assert "已交给指定负责人" in detail
    # The hallway leader: "handed to me" shows it, and the count of what waits for them counts it.
    mine = staff_signed_in(app, "hall")
    assert queue_ids(mine.get("/staff/?mine=1").text) == [a]
    with app.app_context():  # taken by staff: no longer waiting for anyone, except whom it was handed to
        s = app.extensions["db"].Session
        for rid in (a, b):
            s.get(ServiceRequest, rid).taken_at = s.get(ServiceRequest, rid).created_at
        s.commit()
    assert waiting_badge(mine.get("/staff/").text) == 1
    assert queue_ids(mine.get("/staff/?waiting=1").text) == [a]
    assert waiting_badge(staff_signed_in(app, "g1").get("/staff/").text) == 0
    assert queue_ids(staff_signed_in(app, "g1").get("/staff/?mine=1").text) == []


def test_a_request_is_handed_only_to_a_leader_whose_area_holds_it(app):
    g1_req, g2_req = submit(app, G1_BUILDING), submit(app, G2_BUILDING)
    admin = staff_signed_in(app, "admin")
    refused = hand_over(admin, [g1_req, g2_req], actor_of(app, "g1"))
    assert refused.status_code == 422 and 'id="handler-error"' in refused.text
    assert handler_of(app, g1_req) is None and handler_of(app, g2_req) is None  # nothing half done
    nobody = hand_over(admin, [g1_req], "")
    assert nobody.status_code == 422 and 'id="handler-error"' in nobody.text
    # A grid leader chooses among their own grid's leaders only, and a hallway leader hands nothing.
    g1 = staff_signed_in(app, "g1")
    chooser = g1.get("/staff/").text.split('id="handler"', 1)[1].split("</select>", 1)[0]
    assert "3幢1单元楼道长" in chooser and "二网格" not in chooser
    assert hand_over(g1, [g1_req], actor_of(app, "g2")).status_code == 422
    assert hand_over(g1, [g1_req], actor_of(app, "hall")).status_code == 303
    assert handler_of(app, g1_req) == actor_of(app, "hall")
    hall = staff_signed_in(app, "hall")
    assert 'id="handler"' not in hall.get("/staff/").text
    assert hand_over(hall, [g1_req], actor_of(app, "hall")).status_code == 403
