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
