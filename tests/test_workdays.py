"""The working calendar (services.common.workdays): the State Council's
schedule from chinese-calendar, the office's corrections from
LINLI_WORKDAY_OVERRIDES, and a year known to neither said out loud; the
hotline deadlines and the 回访 follow-up counted with it."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import pytest

from services.common import workdays
from services.common.clock import SHANGHAI, SetClock
from services.common.settings import ConfigError, workday_overrides
from services.common.workdays import WorkingCalendar
from services.requests import hotline
from services.requests.models import ServiceRequest
from tests.factories import RESIDENT, add_staff
from tests.factories import staff_signed_in as signed_in

# What the office enters for 春节 2027 until the package has it (the test's
# own entry: holidays Friday 5 to Thursday 11 February, Saturday 13
# February a make-up working day). The State Council's notice is what the
# office would copy here.
SPRING_2027 = {**{f"2027-02-{d:02d}": "holiday" for d in range(5, 12)}, "2027-02-13": "workday"}


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI).astimezone(timezone.utc)


def submit(app) -> ServiceRequest:
    resp = app.test_client().post("/api/v1/requests", json={**RESIDENT, "building": "3"})
    assert resp.status_code == 201, resp.text
    return app.extensions["db"].Session.get(ServiceRequest, resp.get_json()["id"])


def test_the_published_schedule_for_2026_holidays_and_make_up_days():
    cal = WorkingCalendar()
    assert not cal.is_workday(date(2026, 2, 17))  # 春节, a Tuesday
    assert cal.is_workday(date(2026, 2, 14))  # 调休: a Saturday worked
    assert not cal.is_workday(date(2026, 10, 5))  # 国庆, a Monday
    assert cal.is_workday(date(2026, 10, 10))  # 调休 Saturday after 国庆
    assert cal.known(2026)
    # Friday 13 Feb 2026, 10:00: Sat 14 (调休), then 24, 25, 26, 27 Feb.
    assert cal.add_working_days(local(2026, 2, 13, 10), 5) == local(2026, 2, 27, 10)


def test_a_request_before_spring_festival_2027_skips_the_holiday_and_counts_the_make_up_saturday(make_app):
    app = make_app("requests", clock=SetClock(local(2027, 2, 4, 10)), WORKDAY_OVERRIDES=SPRING_2027)
    with app.app_context():
        req = submit(app)
        # Thursday 4 Feb: Fri 12 (1), Sat 13 调休 (2), Mon 15, Tue 16, Wed 17 (5).
        assert req.due_at == local(2027, 2, 17, 10)
        # Monday to Friday would have said Thursday 11 Feb, in the middle of the holiday.
        assert req.due_at.astimezone(SHANGHAI).date() != date(2027, 2, 11)
        # A hand-back is possible until the next working day: Friday 12, not Friday 5.
        assert hotline.handback_open_until(req.created_at) == local(2027, 2, 12, 10)


def test_the_seven_day_ceiling_does_not_run_out_during_the_holiday(make_app):
    app = make_app("requests", clock=SetClock(local(2026, 2, 13, 10)))
    with app.app_context():
        req = submit(app)
        assert req.due_at == local(2026, 2, 27, 10)  # not Friday 20 Feb, a day of 春节


def test_an_override_from_configuration_changes_a_day(make_app, monkeypatch):
    monkeypatch.setenv("LINLI_WORKDAY_OVERRIDES", '{"2026-12-07": "holiday", "2026-12-12": "workday"}')
    app = make_app("requests", clock=SetClock(local(2026, 12, 4, 10)))  # read from the environment at start
    with app.app_context():
        cal = workdays.calendar()
        assert not cal.is_workday(date(2026, 12, 7)) and cal.is_workday(date(2026, 12, 12))
        req = submit(app)
        # Friday 4 Dec: Mon 7 is off, Sat 12 is worked: 8, 9, 10, 11, 12.
        assert req.due_at == local(2026, 12, 12, 10)
    monkeypatch.delenv("LINLI_WORKDAY_OVERRIDES")
    plain = make_app("requests", clock=SetClock(local(2026, 12, 4, 10)))
    with plain.app_context():
        assert submit(plain).due_at == local(2026, 12, 11, 10)


@pytest.mark.parametrize("value, named", [
    ('{"2027-02-30": "holiday"}', "'2027-02-30' is not a date"),
    ('{"2027-02-06": "off"}', 'must be "workday" or "holiday"'),
    ('["2027-02-06"]', "must be a JSON object"),
])
def test_a_bad_override_refuses_to_start_naming_the_variable(monkeypatch, value, named):
    monkeypatch.setenv("LINLI_WORKDAY_OVERRIDES", value)
    with pytest.raises(ConfigError) as err:
        workday_overrides()
    assert "LINLI_WORKDAY_OVERRIDES" in str(err.value) and named in str(err.value)


def test_a_year_known_to_neither_counts_monday_to_friday_and_says_so(caplog):
    cal = WorkingCalendar()
    assert not cal.known(2027) and cal.missing_years([2026, 2027]) == [2027]
    with caplog.at_level(logging.WARNING, logger="services.common.workdays"):
        assert not cal.is_workday(date(2027, 2, 6))  # a Saturday
        assert cal.is_workday(date(2027, 2, 8))  # a Monday: counted, but not silently
    assert [r.getMessage() for r in caplog.records if "2027" in r.getMessage()]
    assert WorkingCalendar(SPRING_2027).known(2027)


@pytest.fixture
def december(make_app):
    """The console on 2 December 2026: 2027's schedule is needed and not in the package.
    Made before the test runs, so that caplog's handler comes after the app's logging set-up."""
    return make_app("requests", setup=add_staff, clock=SetClock(local(2026, 12, 2, 10)))


def test_the_dashboard_warns_of_a_year_without_a_schedule(december, make_app, caplog):
    app = december
    admin = signed_in(app, "admin")
    with caplog.at_level(logging.WARNING):
        page = admin.get("/staff/dashboard")
    assert page.status_code == 200
    assert 'id="calendar-missing-2027"' in page.text and "LINLI_WORKDAY_OVERRIDES" in page.text
    assert "2027年没有节假日安排" in page.text
    assert any("2027" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    entered = make_app("requests", setup=add_staff, clock=SetClock(local(2026, 12, 2, 10)),
                       WORKDAY_OVERRIDES=SPRING_2027)
    assert "calendar-missing" not in signed_in(entered, "admin").get("/staff/dashboard").text
    june = make_app("requests", setup=add_staff, clock=SetClock(local(2026, 6, 2, 10)))
    assert "calendar-missing" not in signed_in(june, "admin").get("/staff/dashboard").text


def test_a_follow_up_due_on_a_holiday_waits_for_the_next_working_day(make_app):
    from services.requests.tasks import follow_up

    clock = SetClock(local(2026, 9, 30, 15))  # Wednesday before 国庆 (1–7 Oct 2026)
    app = make_app("requests", clock=clock)
    with app.app_context():
        req = submit(app)
        req.move_to("assigned", actor="volunteer:1")
        req.move_to("completed", actor="volunteer:1")
        app.extensions["db"].Session.commit()
        clock.advance(timedelta(days=1, hours=1))  # 1 Oct, 16:00: a day after, but a holiday
        assert follow_up.run() == {"follow_ups": 0}
        clock.at = local(2026, 10, 8, 7, 59)
        assert follow_up.run() == {"follow_ups": 0}
        clock.at = local(2026, 10, 8, 8, 0)  # Thursday 8 Oct, the first working day after
        assert follow_up.run() == {"follow_ups": 1}
