"""The residents', volunteers' and staff's pages in a real browser:
Playwright driving Debian's Chromium against the whole system run as real
processes (tests/system.py). Elderly first: the form in zh-CN and en, with
and without JavaScript, the tracking page following the request without a
reload, the staff console, axe-core on every page in normal and elder
mode, sizes and spacing from computed styles, screenshots at 375 and
1280 px under test-artifacts/ (not committed)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests
from playwright import sync_api as playwright_api

from services.common.community import load as load_community
from services.common.settings import base_config
from tests.receivers import WebhookReceiver, wait_for
from tests.system import ROOT, System, extract

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("LINLI_CHROMIUM", "/usr/bin/chromium")
# No outside network here: Chromium must not try to reach Google at start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts"
# 13 is the benchmark's, 14 the end-to-end test's; LINLI_TEST_BROWSER_REDIS_URL
# moves it (two checkouts testing on one machine).
IT_REDIS_URL = os.environ.get("LINLI_TEST_BROWSER_REDIS_URL", "redis://127.0.0.1:6379/12")
STAFF_PASSWORD = "browser-staff-password"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    redis.Redis.from_url(IT_REDIS_URL).flushdb()
    community = json.loads(json.dumps(load_community(base_config("requests")["COMMUNITY_FILE"])))
    with WebhookReceiver() as hook:
        env = {"LINLI_TRACK_POLL_MS": "1000"}
        sys_ = System(tmp_path_factory.mktemp("linli-browser"), "sqlite", IT_REDIS_URL, community, env)
        sys_.hook = hook
        try:
            sys_.start()
            made = subprocess.run([sys.executable, "-m", "flask", "--app", "services.requests", "create-staff",
                                   "--username", "office", "--name", "社区办公室"], cwd=ROOT, capture_output=True,
                                  text=True, env={**sys_.env, "LINLI_STAFF_PASSWORD": STAFF_PASSWORD})
            assert made.returncode == 0, made.stderr
            yield sys_
        finally:
            sys_.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def volunteer(system, name, phone, building="3", unit="1", skills=("haircut",), capacity=3):
    resp = requests.post(f"{system.urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
        "name": name, "phone": phone, "building": building, "unit": unit, "skills": list(skills),
        "capacity": capacity, "channels": [system.hook.url(f"/v/{phone}")]})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def offer_link(system, phone, after=0):
    post = wait_for(lambda: next((r for r in system.hook.received[after:] if r["path"] == f"/v/{phone}"), None),
                    timeout=30, what=f"an offer at /v/{phone}")
    return extract(r"(http://127\.0\.0\.1:\d+/offers/[\w-]+)", post["body"]["message"])


def fill_form(page, description, phone):
    page.select_option("#category", "haircut")
    page.fill("#description", description)
    page.select_option("#building", "3")
    page.select_option("#unit", "1")
    page.fill("#room", "802")
    page.fill("#contact_name", "周玉芬")
    page.fill("#contact_phone", phone)
    page.check("input[name=consent]")


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_resident_submits_and_sees_assignment_without_reloading(system, browser, lang):
    phone = "13900003001" if lang == "zh-CN" else "13900003002"
    volunteer(system, "刘师傅" if lang == "zh-CN" else "Liu", phone)
    resident = browser.new_context(viewport={"width": 375, "height": 800})
    page = resident.new_page()
    page.goto(f"{system.urls['requests']}/")
    if lang == "en":
        page.click("text=English")  # the visible switch, remembered in a cookie
        page.goto(f"{system.urls['requests']}/")
        assert page.inner_text("h1") == "Ask for help"
    else:
        assert page.inner_text("h1") == "我要求助"
    seen = len(system.hook.received)
    fill_form(page, f"browser test {lang}", "13700001111")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/track/[A-Z0-9]{12}"))
    assert ("Thank you" if lang == "en" else "谢谢") in page.inner_text(".notice")
    assert page.get_attribute("#status", "data-status") in ("submitted", "offered", "matching")

    # The volunteer, in a browser of their own, accepts through the offer page.
    helper = browser.new_context(viewport={"width": 375, "height": 800})
    offer = helper.new_page()
    offer.goto(offer_link(system, phone, after=seen))
    assert "137****1111" in offer.content() and "13700001111" not in offer.content()
    offer.click("button[value=accept]")
    offer.wait_for_selector("text=13700001111")

    # The resident's page changes by itself (no reload): status and volunteer.
    page.wait_for_selector("#status[data-status=assigned]", timeout=20000)
    assert page.inner_text("#volunteer") == ("刘师傅" if lang == "zh-CN" else "Liu")
    helper.close()
    resident.close()


def test_the_form_works_without_javascript(system, browser):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{system.urls['requests']}/")
    assert page.is_hidden("#read-aloud")  # nothing that needs a script is offered
    page.click("button[type=submit]")  # empty: field-level errors, in the page
    assert page.locator("p.error").count() >= 4 and page.get_attribute("#contact_phone", "aria-invalid") == "true"
    fill_form(page, "没有脚本也能提交", "13700002222")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/track/[A-Z0-9]{12}"))
    assert page.inner_text("#status")
    assert page.is_visible("#next-step")
    context.close()


def sign_in_staff(context, system):
    page = context.new_page()
    page.goto(f"{system.urls['requests']}/staff/")
    page.fill("#username", "office")
    page.fill("#password", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/staff/$"))
    return page


def test_staff_console_sign_in_proxy_intake_and_reassign(system, browser):
    volunteer(system, "黄阿姨", "13900003003", capacity=1)  # nearer: the first offer goes to her
    second = volunteer(system, "吴师傅", "13900003004", building="4", capacity=1)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = sign_in_staff(context, system)
    page.click("text=代录请求")
    fill_form(page, "电话求助：想理发", "13700003333")
    page.check("input[name=consent_method][value=phone]")
    page.click("form[action$='/staff/new'] button[type=submit]")  # the request form, not the register lookup
    page.wait_for_url(re.compile(r"/staff/requests/[0-9a-f-]{36}"))
    code = page.inner_text(".code")
    system.wait_status(code, "offered")
    page.reload()
    page.select_option("#volunteer_id", str(second))
    page.click("form[action$=reassign] button[type=submit]")
    page.wait_for_url(re.compile(r"done=reassign"))
    assert system.wait_status(code, "assigned")["volunteer_name"] == "吴师傅"
    page.reload()
    assert "吴师傅" in page.inner_text("#offers")
    context.close()


def pages(system) -> dict[str, str]:
    """Every page a resident, volunteer or staff member sees, by name."""
    r, v = system.urls["requests"], system.urls["volunteers"]
    resp = requests.post(f"{r}/api/v1/requests", timeout=10, json={
        "category": "haircut", "description": "页面检查", "building": "3", "unit": "1", "room": "501",
        "contact_name": "检查", "contact_phone": "13700004444", "consent": True})
    code, request_id = resp.json()["tracking_code"], resp.json()["id"]
    return {
        "form": f"{r}/", "tracking": f"{r}/track/{code}", "not-found": f"{r}/track/NOPE",
        "posters": f"{r}/posters", "poster": f"{r}/posters/3",
        "staff-login": f"{r}/staff/login", "queue": f"{r}/staff/", "request": f"{r}/staff/requests/{request_id}",
        "proxy": f"{r}/staff/new", "dashboard": f"{r}/staff/dashboard", "volunteers": f"{r}/staff/volunteers",
        "access-log": f"{r}/staff/access-log",
        "volunteer-home": f"{v}/", "volunteer-login": f"{v}/login",
    }


def portal_sign_in(system, browser_context, phone: str):
    """A volunteer signs in to the portal by the link from their webhook: the page, at /me."""
    page = browser_context.new_page()
    page.goto(f"{system.urls['volunteers']}/login")
    seen = len(system.hook.received)
    page.fill("#phone", phone)
    page.click("button[type=submit]")
    # Not the first message to this volunteer, necessarily: an offer may come first.
    post = wait_for(lambda: next((x for x in system.hook.received[seen:] if x["path"] == f"/v/{phone}"
                                  and "/login/" in x["body"]["message"]), None), timeout=30, what="the sign-in link")
    page.goto(extract(r"(http://127\.0\.0\.1:\d+/login/[\w-]+)", post["body"]["message"]))
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/me"))
    return page


def portal_pages(system, browser_context, phone: str) -> dict[str, str]:
    """Sign a volunteer in through a magic link read from their webhook."""
    volunteer(system, "郑大姐", phone)
    portal_sign_in(system, browser_context, phone).close()
    return {"portal": f"{system.urls['volunteers']}/me", "task-sheet": f"{system.urls['volunteers']}/me/sheet"}


CONTROLS = "button, select, textarea, input, nav.switches a, nav.console a, .choice"


def layout_problems(page, elder: bool) -> list[str]:
    """Sizes and spacing from computed styles: base text ≥ 18 px (elder
    mode: larger, line height ≥ 1.3), touch targets ≥ 44 px (elder: 60 px),
    no sideways scrolling at 375 px."""
    return page.evaluate("""([selector, elder]) => {
        const out = [];
        const body = getComputedStyle(document.body);
        const size = parseFloat(body.fontSize), line = parseFloat(body.lineHeight) / size;
        if (size < (elder ? 20 : 18)) out.push(`body text ${size}px`);
        if (elder && !(line >= 1.3)) out.push(`line height ${line}`);
        const min = elder ? 60 : 44;
        for (const el of document.querySelectorAll(selector)) {
            if (el.type === "checkbox" || el.type === "radio" || el.type === "hidden") continue;
            if (el.closest("table") || el.closest("form.inline")) continue;  // dense staff tables
            const box = el.getBoundingClientRect();
            if (box.width === 0) continue;
            const name = `${el.tagName}#${el.id || el.textContent.trim().slice(0, 20)}`;
            if (box.height < min - 0.5 || box.width < min - 0.5)
                out.push(`${name} ${Math.round(box.width)}x${Math.round(box.height)}`);
        }
        if (document.documentElement.scrollWidth > window.innerWidth + 1)
            out.push(`scrolls sideways: ${document.documentElement.scrollWidth}px`);
        return out;
    }""", [CONTROLS, elder])


def test_every_page_passes_axe_and_the_size_rules_in_normal_and_elder_mode(system, browser):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    ARTIFACTS.mkdir(exist_ok=True)
    report = {}
    phones = iter(range(13900003100, 13900003200))
    for elder in (False, True):
        for width in (375, 1280):
            context = browser.new_context(viewport={"width": width, "height": 900})
            # Elder mode and the language are remembered in cookies once switched.
            context.new_page().goto(f"{system.urls['requests']}/?elder={int(elder)}")
            context.new_page().goto(f"{system.urls['volunteers']}/?elder={int(elder)}")
            sign_in_staff(context, system)
            targets = {**pages(system), **portal_pages(system, context, str(next(phones)))}
            page = context.new_page()
            for name, url in targets.items():
                page.goto(url)
                assert page.url == url, (name, page.url)  # the page itself, not a sign-in redirect
                assert ("elder" in (page.get_attribute("body", "class") or "")) == elder, name
                tag = f"{name}-{'elder' if elder else 'normal'}-{width}"
                page.screenshot(path=str(ARTIFACTS / f"{tag}.png"), full_page=True)
                if width == 375:
                    problems = layout_problems(page, elder)
                    assert not problems, (tag, problems)
                else:
                    violations = axe.run(page).response["violations"]
                    bad = [(v["id"], v["impact"], len(v["nodes"])) for v in violations
                           if v["impact"] in ("serious", "critical")]
                    report[tag] = [(v["id"], v["impact"]) for v in violations]
                    assert not bad, (tag, bad)
            context.close()
    (ARTIFACTS / "axe-report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    assert len(report) == 2 * 16


def test_read_aloud_uses_the_browsers_speech_synthesis(system, browser):
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script("""
        window.__spoken = [];
        window.speechSynthesis.speak = (u) => window.__spoken.push([u.lang, u.text]);
    """)
    page.goto(f"{system.urls['requests']}/?elder=1")
    page.click("#read-aloud")
    spoken = page.evaluate("window.__spoken")
    assert spoken and spoken[0][0] == "zh-CN" and "我要求助" in spoken[0][1]
    context.close()


def test_poster_and_task_sheet_print_on_a4(system, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{system.urls['requests']}/posters/7")
    assert page.locator(".qr svg").count() == 1
    assert f"{system.urls['requests']}/?building=7" in page.inner_text(".qr figcaption")
    ARTIFACTS.mkdir(exist_ok=True)
    page.emulate_media(media="print")
    assert page.is_hidden("header.top") and page.is_hidden("footer")
    pdf = page.pdf(format="A4", path=str(ARTIFACTS / "poster-7.pdf"))
    assert pdf[:4] == b"%PDF" and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + \
        pdf.count(b"/Type/Page") >= 1
    # The QR code's link opens the form with the building chosen.
    page.emulate_media(media="screen")
    page.goto(f"{system.urls['requests']}/?building=7")
    assert page.eval_on_selector("#building", "el => el.value") == "7"
    context.close()


def seed_requests(system, count: int) -> list[dict]:
    """`count` requests as residents send them, each with a phone of its own."""
    kinds = ("environment", "parking", "complaint", "lift_retrofit")  # the office's: no volunteer traffic
    made = []
    for n in range(count):
        resp = requests.post(f"{system.urls['requests']}/api/v1/requests", timeout=10, json={
            "category": kinds[n % len(kinds)], "description": f"桌面测试 {n}", "building": "3", "unit": "1",
            "room": f"{n + 101}", "contact_name": "桌面", "contact_phone": f"1360000{n + 1000:04d}",
            "consent": True})
        assert resp.status_code == 201, resp.text
        made.append({**resp.json(), "phone": f"1360000{n + 1000:04d}"})
    return made


def visible_rows(page) -> int:
    """Queue rows wholly inside the window, without scrolling."""
    return page.evaluate("""() => [...document.querySelectorAll('#queue tbody tr')]
        .filter(tr => tr.getBoundingClientRect().bottom <= window.innerHeight).length""")


def axe_clean(axe, page, tag: str) -> None:
    violations = axe.run(page).response["violations"]
    bad = [(v["id"], v["impact"], len(v["nodes"])) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, (tag, bad)


def test_the_queue_works_as_a_desk_tool_at_1280_and_on_a_phone(system, browser):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    ARTIFACTS.mkdir(exist_ok=True)
    seeded = seed_requests(system, 27)
    desk = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = sign_in_staff(desk, system)
    page.goto(f"{system.urls['requests']}/staff/")
    page.screenshot(path=str(ARTIFACTS / "desk-queue-1280.png"))
    # A desk screen: filters in one row, 20+ rows in view, phones on one line, no sideways scrolling.
    tops = page.eval_on_selector_all("form.filters .field",
                                     "els => els.map(e => Math.round(e.getBoundingClientRect().top))")
    assert len(tops) == 5 and max(tops) - min(tops) <= 4, tops  # one row
    assert visible_rows(page) >= 20, visible_rows(page)
    phone = page.locator("#queue tbody tr td:last-child").first
    assert phone.evaluate("el => getComputedStyle(el).whiteSpace") == "nowrap"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert "桌面" not in page.inner_text("#queue")  # names stay out of the list
    axe_clean(axe, page, "desk-queue-1280")

    # Sorted by a header link; the header says how.
    page.click("#queue thead a:has-text('服务')")
    page.wait_for_url(re.compile(r"sort=service"))
    assert page.get_attribute("#queue thead th[aria-sort]", "aria-sort") == "ascending"

    # A whole phone number never leaves the page; the last four digits find the request.
    page.fill("#f-search", seeded[3]["phone"])
    page.press("#f-search", "Enter")
    assert seeded[3]["phone"] not in page.url
    page.fill("#f-search", seeded[3]["phone"][-4:])
    page.press("#f-search", "Enter")
    page.wait_for_url(re.compile(r"search=" + seeded[3]["phone"][-4:]))
    assert page.locator("#queue tbody tr").count() == 1
    assert seeded[3]["tracking_code"] in page.inner_text("#queue")

    # With scripts, one box ticks the page.
    page.goto(f"{system.urls['requests']}/staff/")
    page.check("#select-all")
    assert page.locator("#queue tbody input[name=ids]:checked").count() == page.locator("#queue tbody tr").count()
    page.uncheck("#select-all")

    # In English too, 20+ rows in view.
    page.goto(f"{system.urls['requests']}/staff/?lang=en")
    page.screenshot(path=str(ARTIFACTS / "desk-queue-en-1280.png"))
    assert visible_rows(page) >= 20, visible_rows(page)
    page.goto(f"{system.urls['requests']}/staff/?lang=zh-CN")

    # Tick two rows, download them.
    page.locator("#queue tbody input[name=ids]").nth(0).check()
    page.locator("#queue tbody input[name=ids]").nth(1).check()
    with page.expect_download() as download:
        page.click("button[value=export_csv]")
    lines = Path(download.value.path()).read_text(encoding="utf-8-sig").strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("tracking_code,")

    # A request's page: what to do next comes before the timeline.
    page.goto(f"{system.urls['requests']}/staff/requests/{seeded[0]['id']}")
    nxt, timeline = page.locator("#next").bounding_box(), page.locator("#timeline").bounding_box()
    assert nxt["y"] < timeline["y"] or nxt["x"] < timeline["x"]
    assert page.is_visible("#next form[action$=take] button")
    page.screenshot(path=str(ARTIFACTS / "desk-request-1280.png"), full_page=True)
    axe_clean(axe, page, "desk-request-1280")
    desk.close()

    for elder in (False, True):
        phone_ctx = browser.new_context(viewport={"width": 375, "height": 800})
        phone_ctx.new_page().goto(f"{system.urls['requests']}/?elder={int(elder)}")
        page = sign_in_staff(phone_ctx, system)
        tag = "elder-375" if elder else "375"
        for name, url in (("queue", "/staff/"), ("request", f"/staff/requests/{seeded[0]['id']}")):
            page.goto(system.urls["requests"] + url)
            assert not layout_problems(page, elder), (name, tag, layout_problems(page, elder))
            page.screenshot(path=str(ARTIFACTS / f"desk-{name}-{tag}.png"), full_page=True)
            axe_clean(axe, page, f"desk-{name}-{tag}")
        phone_ctx.close()
    elder_desk = browser.new_context(viewport={"width": 1280, "height": 800})
    elder_desk.new_page().goto(f"{system.urls['requests']}/?elder=1")
    page = sign_in_staff(elder_desk, system)
    page.screenshot(path=str(ARTIFACTS / "desk-queue-elder-1280.png"))
    axe_clean(axe, page, "desk-queue-elder-1280")
    elder_desk.close()


# --- the office (办公): a staff account, a weekly session, service hours ---


def hours_to_confirm(system, context, phone: str, count: int) -> None:
    """`count` sharpening requests the volunteer (the only one who sharpens)
    accepts and completes in the portal: hours waiting for confirmation."""
    r = system.urls["requests"]
    for n in range(count):
        seen = len(system.hook.received)
        resp = requests.post(f"{r}/api/v1/requests", timeout=10, json={
            "category": "sharpening", "description": f"磨剪刀 {n}", "building": "3", "unit": "1", "room": "601",
            "contact_name": "冯", "contact_phone": "13700005555", "consent": True})
        assert resp.status_code == 201, resp.text
        link = offer_link(system, phone, after=seen)
        helper = requests.Session()
        page = helper.get(link, timeout=5).text
        accepted = helper.post(link, data={"decision": "accept", "csrf_token": extract(
            r'name="csrf_token" value="([^"]+)"', page)}, timeout=10)
        assert accepted.status_code == 200
    page = portal_sign_in(system, context, phone)
    for _ in range(count):
        wait_for(lambda: (page.reload(), page.locator("section.task").count())[1], timeout=30,
                 what="a task to complete")
        page.locator("section.task form[action$=complete] button[type=submit]").first.click()
        page.wait_for_load_state()
    page.close()


def office_page_checks(page, axe, tag: str, width: int) -> None:
    page.screenshot(path=str(ARTIFACTS / f"office-{tag}-{width}.png"), full_page=True)
    if width == 375:
        problems = layout_problems(page, False)
        assert not problems, (tag, problems)
    violations = axe.run(page).response["violations"]
    bad = [(v["id"], v["impact"], len(v["nodes"])) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, (tag, width, bad)


def until_shown(page, selector: str, what: str) -> None:
    """Reload until matching has the change (the page says so, once)."""
    if not page.locator(selector).count():
        wait_for(lambda: (page.reload(), page.locator(selector).count())[1], timeout=30, what=what)


def test_the_office_creates_a_staff_account_edits_a_session_and_confirms_hours(system, browser):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    ARTIFACTS.mkdir(exist_ok=True)
    v, phone = system.urls["volunteers"], "13900003301"
    vid = volunteer(system, "冯师傅", phone, skills=("sharpening", "umbrella_repair"))
    station = requests.post(f"{v}/api/v1/stations", headers=system.admin(), timeout=5,
                            json={"code": "office-test", "name": "办公测试站", "place": "社区中心一楼"})
    assert station.status_code == 201, station.text
    sid = station.json()["id"]
    made = requests.post(f"{v}/api/v1/stations/{sid}/sessions", headers=system.admin(), timeout=5, json={
        "category": "sharpening", "weekday": 5, "start": "09:00", "end": "10:00", "volunteer_id": vid, "slots": 3})
    assert made.status_code == 201, made.text
    setup = browser.new_context()
    hours_to_confirm(system, setup, phone, 2)
    setup.close()

    for width, start, end in ((1280, "14:00", "15:30"), (375, "08:30", "09:30")):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = sign_in_staff(context, system)
        page.click("nav.console >> text=办公")
        page.wait_for_url(re.compile(r"/staff/office$"))
        office_page_checks(page, axe, "home", width)

        # A hallway leader's account, with a password generated and shown once.
        page.click("text=工作人员账号")
        page.fill("#username", f"hall-{width}")
        page.fill("#display_name", f"楼道长{width}")
        page.select_option("#role", "hallway_leader")
        page.fill("#stairwells", "3:1")
        page.click("form[action$='/office/staff'] button[type=submit]")
        assert len(page.inner_text("#one-time-password")) == 16
        assert page.locator(f"tr[data-staff=hall-{width}]").count() == 1
        office_page_checks(page, axe, "staff", width)

        # A weekly session changed: sent to matching, then shown once it has it.
        page.goto(f"{system.urls['requests']}/staff/office/stations")
        page.click(f"#station-{sid} a[href$='/sessions/{made.json()['id']}']")
        page.fill("#start", start)
        page.fill("#end", end)
        office_page_checks(page, axe, "session", width)
        page.click("form.office-form button[type=submit]")
        assert page.locator("#change-sent, #change-arrived").count() == 1  # a worker may be quicker than the page
        until_shown(page, "#change-arrived", "the session change in matching")
        assert f"{start}–{end}" in page.inner_text(f"#station-{sid}")
        office_page_checks(page, axe, "stations", width)

        # Hours: confirmed at the desk, corrected with a reason on the phone.
        page.goto(f"{system.urls['requests']}/staff/office/hours")
        row = page.locator("tr[data-entry]").first
        entry = row.get_attribute("data-entry")
        office_page_checks(page, axe, "hours", width)
        if width == 1280:
            row.locator("form[action$=confirm] button").click()
        else:
            row.locator("summary").click()
            row.locator("input[name=hours]").fill("1.5")
            row.locator("input[name=reason]").fill("路上多花了半小时")
            row.locator("form[action$=correct] button").click()
        until_shown(page, "#change-arrived", "the hours confirmed in matching")
        assert page.locator(f"tr[data-entry='{entry}']").count() == 0
        context.close()
    confirmed = requests.get(f"{v}/api/v1/hours?status=confirmed", headers=system.admin(), timeout=5).json()
    assert sorted(e["hours"] for e in confirmed if e["volunteer_id"] == vid)[-1] == "1.5"


def screenshot_axe_clean(page, tag: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{tag}.png"), full_page=True)
    violations = Axe().run(page).response["violations"]
    bad = [(v["id"], v["impact"], len(v["nodes"])) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, (tag, bad)


@pytest.mark.parametrize("width", [1280, 375])
def test_the_office_registers_a_volunteer_and_imports_a_roster_in_the_console(system, browser, width):
    """No API for the office's daily work: the form with its field errors,
    the change carried out by matching's worker, a roster with a bad row."""
    phone = f"139000034{width % 100:02d}"
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = sign_in_staff(context, system)
    page.goto(f"{system.urls['requests']}/staff/volunteers")
    page.click("text=登记志愿者")
    page.fill("#name", "李医生")
    page.fill("#phone", "12345")  # wrong: said next to the field, nothing sent
    page.click("#volunteer-form button[type=submit]")
    assert page.get_attribute("#phone", "aria-invalid") == "true" and page.is_visible("#phone-error")
    screenshot_axe_clean(page, f"volunteer-register-errors-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False)
    page.fill("#phone", phone)
    page.select_option("#building", "3")
    page.fill("#unit", "1")
    page.check("input[name=skills][value=health_check]")
    page.check("input[name=verified][value=health_check]")
    page.select_option("select[name=window-0-weekday]", "5")
    page.fill("input[name=window-0-start]", "09:00")
    page.fill("input[name=window-0-end]", "11:00")
    page.click("#volunteer-form button[type=submit]")
    page.wait_for_url(re.compile(r"/staff/volunteers/changes/[0-9a-f-]{36}"))
    for _ in range(30):  # the page looks again by itself; matching's worker carries the change out
        if page.get_attribute("#change-status", "data-state") == "done":
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#change-status", "data-state") == "done"
    text = page.inner_text("main")
    assert "健康体检" in text and "社区办公室" in text and phone not in text
    screenshot_axe_clean(page, f"volunteer-registered-{width}")

    page.goto(f"{system.urls['requests']}/staff/volunteers/import")
    roster = ("name,phone,building,unit,skills\n"
              f"张三,1390000{width:04d},3,1,haircut\n"
              "李四,123,99,1,haircut\n").encode()
    page.set_input_files("#file", files=[{"name": "roster.csv", "mimeType": "text/csv", "buffer": roster}])
    page.check("input[name=mode][value=valid]")
    page.click("#roster-form button[type=submit]")
    page.wait_for_selector("#roster-errors")
    assert page.locator("#roster-errors tr[data-row='3']").count() >= 2  # phone and building
    screenshot_axe_clean(page, f"roster-report-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False)
    page.click("text=查看导入何时生效")
    for _ in range(30):
        if page.get_attribute("#change-status", "data-state") == "done":
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#change-status", "data-state") == "done"
    context.close()


# --- the desk on a phone: the queue as cards; time coins on a volunteer's page ---


def test_the_queue_is_a_list_of_cards_at_375_px_in_normal_and_elder_mode(system, browser):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    ARTIFACTS.mkdir(exist_ok=True)
    seeded = seed_requests(system, 3)
    for elder in (False, True):
        context = browser.new_context(viewport={"width": 375, "height": 800})
        context.new_page().goto(f"{system.urls['requests']}/?elder={int(elder)}")
        page = sign_in_staff(context, system)
        tag = "elder-375" if elder else "375"
        page.goto(f"{system.urls['requests']}/staff/")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        assert not layout_problems(page, elder), (tag, layout_problems(page, elder))
        row = page.locator(f"#queue tbody tr[data-request='{seeded[0]['id']}']")
        # A card: its own box, the whole width, and each column on a line under its label.
        assert row.evaluate("el => getComputedStyle(el).display") == "grid"
        box = row.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375
        text = row.inner_text()
        assert seeded[0]["tracking_code"] in text and "环境" in text  # the service in words, not its code
        labels = row.evaluate("""tr => [...tr.querySelectorAll('td[data-label]')]
            .filter(td => getComputedStyle(td).display !== 'none')
            .map(td => getComputedStyle(td, '::before').content)""")
        assert {'"服务项目："', '"地点："', '"状态："', '"办理时限："'} <= set(labels), labels
        assert row.locator("input[name=ids]").is_visible()
        if elder:
            assert float(page.evaluate("getComputedStyle(document.body).fontSize")[:-2]) >= 20
        page.screenshot(path=str(ARTIFACTS / f"desk-queue-cards-{tag}.png"), full_page=True)
        axe_clean(axe, page, f"desk-queue-cards-{tag}")
        # The tick box still works for the bulk actions: take the first card's request.
        row.locator("input[name=ids]").check()
        page.click("button[value=take]")
        page.wait_for_url(re.compile(r"done=taken"))
        assert page.locator("div.notice[role=status]").is_visible()
        context.close()


@pytest.mark.parametrize("width", [1280, 375])
def test_the_office_records_coins_spent_and_is_told_when_the_balance_falls_short(system, browser, width):
    vid = volunteer(system, "钱阿姨", f"139000036{width % 100:02d}")
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = sign_in_staff(context, system)
    page.goto(f"{system.urls['requests']}/staff/volunteers/{vid}")
    assert "0" in page.inner_text("#coin-balance")
    page.fill("#spend-amount", "1")  # without what it paid for: said next to the field, nothing sent
    page.click("#spend-form button[type=submit]")
    assert page.get_attribute("#spend-ref", "aria-invalid") == "true" and page.is_visible("#spend-ref-error")
    screenshot_axe_clean(page, f"coins-spend-errors-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False)
    page.fill("#spend-ref", "理发一次")
    page.click("#spend-form button[type=submit]")
    page.wait_for_url(re.compile(r"/staff/volunteers/changes/[0-9a-f-]{36}"))
    for _ in range(30):  # matching's worker records the outcome; the page looks again by itself
        if page.get_attribute("#change-status", "data-state") != "waiting":
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#change-status", "data-state") == "refused"
    assert "时间币不足" in page.inner_text("#change-status")
    screenshot_axe_clean(page, f"coins-spend-refused-{width}")


@pytest.mark.parametrize("width", [1280, 375])
def test_the_register_list_and_an_import_with_an_error_row(system, browser, width):
    """The office's Excel (here its CSV) with a bad row: the report row by
    row, the good rows carried out by the community service's worker, then
    the household list as a desk table (1280) and on a phone (375)."""
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = sign_in_staff(context, system)
    page.goto(f"{system.urls['requests']}/staff/register")
    page.click("text=导入办公室的 Excel 台账")
    rooms = ("101", "102") if width == 1280 else ("201", "202")
    register = ("楼幢,单元,楼层,室号,户电话,姓名,性别,出生年份,与户主关系,独居,失能情况\n"
                f"3,1,{rooms[0][0]},{rooms[0]},1390000{width:04d},王桂英,女,1941,户主,是,半失能\n"
                f"3,1,{rooms[1][0]},{rooms[1]},,李明,男,1980,户主,否,\n"
                "3,9,1,103,123,,女,一九四五,户主,否,\n").encode()
    page.set_input_files("#file", files=[{"name": "台账.csv", "mimeType": "text/csv", "buffer": register}])
    page.check("input[name=mode][value=valid]")
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("#register-errors")
    assert page.locator("#register-errors tr[data-row='4']").count() >= 3  # unit, phone, name, year
    screenshot_axe_clean(page, f"register-import-report-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False)
    page.click("text=查看导入何时生效")
    for _ in range(30):  # the community service's worker carries the import out
        if page.get_attribute("#change-status", "data-state") == "applied":
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#change-status", "data-state") == "applied"

    page.goto(f"{system.urls['requests']}/staff/register?lives_alone=1")
    assert "王桂英" in page.inner_text("#register") and "80岁及以上" in page.inner_text("#register")
    assert "13900" not in page.inner_text("#register")  # phones masked in the list
    page.goto(f"{system.urls['requests']}/staff/register")
    if width == 1280:
        bottoms = page.eval_on_selector_all("form.filters .field, form.filters .choice",
                                            "els => els.map(e => Math.round(e.getBoundingClientRect().bottom))")
        assert max(bottoms) - min(bottoms) <= 4, bottoms  # the filters in one row
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    else:
        assert not layout_problems(page, elder=False)
    screenshot_axe_clean(page, f"register-list-{width}")
    page.click(f"text=3幢1单元{rooms[0]}室")
    page.click("#show-sealed")
    assert "半失能" in page.inner_text("#residents")
    screenshot_axe_clean(page, f"register-household-{width}")
    context.close()


# --- visits (探访) and the daily check-in (报平安) ---


@pytest.mark.parametrize("width", [1280, 375])
def test_the_office_plans_visits_with_a_check_in_and_works_through_them(system, browser, width):
    """A resident imported into the register gets a weekly plan with the
    daily check-in from their page; the link is shown once and opens the
    one-tap page (elder mode); the visit comes due through the community
    service's worker and is recorded on the Visits page."""
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = sign_in_staff(context, system)
    room = "501" if width == 1280 else "502"
    name = "孙秀珍" if width == 1280 else "周桂芳"
    page.goto(f"{system.urls['requests']}/staff/register/import")
    register = ("楼幢,单元,楼层,室号,户电话,姓名,性别,出生年份,与户主关系,独居\n"
                f"3,1,5,{room},1390001{width:04d},{name},女,1938,户主,是\n").encode()
    page.set_input_files("#file", files=[{"name": "台账.csv", "mimeType": "text/csv", "buffer": register}])
    page.click("#register-form button[type=submit]")
    page.click("text=查看导入何时生效")
    for _ in range(30):
        if page.get_attribute("#change-status", "data-state") == "applied":
            break
        page.wait_for_timeout(1000)
        page.reload()
    page.goto(f"{system.urls['requests']}/staff/register?search={room}")
    page.click(f"text=3幢1单元{room}室")
    page.click(f"#residents >> text={name}")
    page.click("#visit-plan-link")
    page.select_option("#rhythm", "weekly")
    page.select_option("#visitor", "hallway_leader")
    page.check("input[name=checkin_daily]")
    page.click("form.stack button[type=submit]")
    link = page.get_attribute("#checkin-link a", "href")
    assert link.startswith(system.urls["community"] + "/checkin/")
    screenshot_axe_clean(page, f"visit-plan-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False)

    # The resident's one-tap page, in elder mode whatever the phone says.
    resident = browser.new_context(viewport={"width": 375, "height": 700}).new_page()
    resident.goto(link)
    for _ in range(20):  # the plan reaches the community service's worker
        if resident.locator("button.big").count():
            break
        resident.wait_for_timeout(500)
        resident.goto(link)
    assert float(resident.evaluate("getComputedStyle(document.body).fontSize")[:-2]) >= 20
    assert name not in resident.content()
    screenshot_axe_clean(resident, f"checkin-{width}")
    assert not layout_problems(resident, elder=True)
    resident.click("button.big")
    assert "谢谢" in resident.inner_text("main")

    # The visit comes due (beat, then the worker) and is recorded on the Visits page.
    for _ in range(30):
        page.goto(f"{system.urls['requests']}/staff/visits")
        row = page.locator("#visits tbody tr", has_text=name)
        if row.count() and row.locator("select[name=outcome]").count():
            break
        page.wait_for_timeout(1000)
    assert "今日已报平安" in row.inner_text()
    screenshot_axe_clean(page, f"visits-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False)
    else:
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    row.locator("select[name=outcome]").select_option("done")
    row.locator("button[type=submit]").click()
    assert page.is_visible("#visit-recorded")
    context.close()


# --- the call log (来电登记) ---


@pytest.mark.parametrize("width", [1280, 375])
def test_the_call_log_records_a_call_with_errors_at_their_fields(system, browser, width):
    phone = f"136000037{width % 100:02d}"
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = sign_in_staff(context, system)
    page.click("nav.console >> text=来电登记")
    page.wait_for_url(re.compile(r"/staff/calls$"))
    page.click("#record-call button[type=submit]")  # nothing filled in: said at each field, nothing saved
    assert page.get_attribute("#caller_phone", "aria-invalid") == "true" and page.is_visible("#caller_phone-error")
    assert page.get_attribute("#topic", "aria-describedby") == "topic-error"
    assert page.get_attribute("#outcome", "aria-invalid") == "true"
    screenshot_axe_clean(page, f"calls-errors-{width}")
    if width == 375:
        assert not layout_problems(page, elder=False), layout_problems(page, elder=False)
    page.fill("#caller_phone", phone)
    page.fill("#caller_name", "李大爷")
    page.select_option("#building", "3")
    page.fill("#unit", "1")
    page.select_option("#topic", "other")
    page.fill("#note", "问社区食堂几点开门")
    page.select_option("#outcome", "answered")
    page.click("#record-call button[type=submit]")
    page.wait_for_url(re.compile(r"/staff/calls/\d+\?done=recorded"))
    assert phone not in page.url and phone in page.inner_text("#caller-phone")
    assert "当场答复" in page.inner_text("#call-outcome")
    screenshot_axe_clean(page, f"call-{width}")
    page.goto(f"{system.urls['requests']}/staff/calls")
    row = page.locator("#calls tbody tr").first
    assert f"{phone[:3]}****{phone[-4:]}" in row.inner_text() and phone not in page.content()
    if width == 375:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    screenshot_axe_clean(page, f"calls-{width}")
    context.close()
