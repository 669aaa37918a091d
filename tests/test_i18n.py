"""Every user-facing string has its zh-CN translation."""
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "services/common/translations/zh_Hans_CN/LC_MESSAGES/messages.po"


def test_the_catalogue_translates_every_string_in_the_code(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "extract", "-F", "babel.cfg",
                    "-k", "N_", "-k", "_l", "-o", str(pot), "."], cwd=ROOT, check=True, capture_output=True)
    extracted = {m.id for m in read_po(pot.open("rb")) if m.id}
    catalog = read_po(CATALOG.open("rb"))
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    assert len(extracted) > 50
    assert sorted(extracted - translated) == []


def test_messages_and_category_names_come_in_chinese_from_the_catalogue():
    """Notify renders in a worker, with no request to take a locale from: it
    reads the same catalogue by the contract's language code (services.common.i18n)."""
    import re

    from services.common import contract
    from services.notify import messages

    han = re.compile(r"[\u4e00-\u9fff]")
    context = {"category": "haircut", "building": "3幢", "masked_phone": "138****1234", "summary": "理发",
               "window_start": "", "window_end": "", "offer_url": "u", "place": "", "appointment": "",
               "volunteer_name": "王师傅", "tracking_url": "t", "tracking_code": "c", "due": "d", "portal_url": "p",
               "grid_name": "一网格", "open": 1, "overdue": 0, "escalated": 0, "leader_name": "李", "items": [],
               "reason": "not_taken", "login_url": "l", "minutes": 30, "rating": 5, "thanks": True, "comment": "",
               "unit": "1", "days": 10, "why": "w", "office_phone": "0571-88001234"}
    for template in messages.TEMPLATES:
        zh, en = messages.render(template, "zh-CN", context), messages.render(template, "en", context)
        assert all(han.search(part) for part in zh), template
        assert zh != en and "Linli" in en[0]
    assert messages.render("escalation", "zh-CN", context)[1].count("超时无人接单") == 1  # the reason, translated
    assert [c.name("zh-CN") for c in contract.CATEGORIES[:2]] == ["理发", "改衣"]
    assert [c.name("en") for c in contract.CATEGORIES[:2]] == ["Haircut", "Clothes alterations"]
