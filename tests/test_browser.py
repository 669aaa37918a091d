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
    page.click("main form button[type=submit]")
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


def portal_pages(system, browser_context, phone: str) -> dict[str, str]:
    """Sign a volunteer in through a magic link read from their webhook."""
    volunteer(system, "郑大姐", phone)
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
    page.close()
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


def axe_clean(page, tag: str) -> None:
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
    axe_clean(page, f"volunteer-register-errors-{width}")
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
    axe_clean(page, f"volunteer-registered-{width}")

    page.goto(f"{system.urls['requests']}/staff/volunteers/import")
    roster = ("name,phone,building,unit,skills\n"
              f"张三,1390000{width:04d},3,1,haircut\n"
              "李四,123,99,1,haircut\n").encode()
    page.set_input_files("#file", files=[{"name": "roster.csv", "mimeType": "text/csv", "buffer": roster}])
    page.check("input[name=mode][value=valid]")
    page.click("#roster-form button[type=submit]")
    page.wait_for_selector("#roster-errors")
    assert page.locator("#roster-errors tr[data-row='3']").count() >= 2  # phone and building
    axe_clean(page, f"roster-report-{width}")
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
