"""The register as the office keeps it in Excel (住户台账): one resident a
row, with their household's columns, Chinese headers (the field names work
too). Read with the roster's bounded reader, each row checked with the
contract's HouseholdIn and ResidentIn — the console's upload and the
community service's export use this same module, so a downloaded register
imports again as it is."""
from __future__ import annotations

import re
from collections.abc import Iterable

from marshmallow import ValidationError

from .contract import RegisterRow
from .i18n import N_

# (key, the office's header). Household columns first, then the resident's.
COLUMNS = (
    ("building", "楼幢"), ("unit", "单元"), ("floor", "楼层"), ("room", "室号"), ("floor_area", "面积"),
    ("tenure", "产权"), ("phones", "户电话"),
    ("name", "姓名"), ("sex", "性别"), ("birth_year", "出生年份"), ("relation", "与户主关系"), ("phone", "本人电话"),
    ("lives_alone", "独居"), ("care_need", "失能情况"), ("disability", "残疾"), ("party_member", "党员"),
    ("reach_by", "联系方式"), ("emergency_name", "紧急联系人"), ("emergency_relation", "紧急联系人关系"),
    ("emergency_phone", "紧急联系电话"), ("consent_contact", "同意联系"), ("consent_on", "同意日期"),
    ("consent_how", "同意方式"),
)
HEADERS = tuple(h for _, h in COLUMNS)
HOUSEHOLD_KEYS = ("building", "unit", "floor", "room", "floor_area", "tenure", "phones")
SEALED_KEYS = ("care_need", "disability")
# The office's words for codes, both ways.
WORDS = {
    "tenure": {"owner": "自有", "tenant": "租住"},
    "sex": {"female": "女", "male": "男"},
    "relation": {"head": "户主", "spouse": "配偶", "child": "子女", "parent": "父母", "grandchild": "孙辈",
                 "other": "其他"},
    "care_need": {"none": "无", "partial": "半失能", "full": "失能"},
    "reach_by": {"text": "短信", "call": "电话", "hallway_leader": "经楼道长"},
    "consent_how": {"paper": "书面", "in_person": "当面", "phone": "电话", "online": "线上"},
}
CODES = {key: {word: code for code, word in words.items()} for key, words in WORDS.items()}
TRUE = {"1", "true", "yes", "y", "是", "√", "✓"}
FALSE = {"", "0", "false", "no", "n", "否"}
SPLIT = re.compile(r"[,，、;；/\s]+")
YES_OR_NO = N_("Write 是 or 否.")
NUMBER = N_("A number.")


def _cell(row: dict, key: str, header: str) -> str:
    value = row.get(header)
    if value is None:
        value = row.get(key)
    return str(value or "").strip()


def to_input(row: dict) -> tuple[dict, dict]:
    """A file row → RegisterRow's input ({household, resident}) and the
    errors found on the way (a yes/no or a number that is neither)."""
    raw = {key: _cell(row, key, header) for key, header in COLUMNS}
    errors: dict = {}
    out: dict = {}
    for key, text in raw.items():
        if key in CODES:
            if text:
                out[key] = CODES[key].get(text, text)
        elif key in ("lives_alone", "party_member", "consent_contact"):
            if text.lower() in TRUE:
                out[key] = True
            elif text.lower() in FALSE:
                out[key] = False
            else:
                errors[key] = [YES_OR_NO]
        elif key in ("floor", "birth_year"):
            if text:
                out[key] = int(text) if re.fullmatch(r"-?\d+", text.removesuffix(".0")) and text.count(".") <= 1 \
                    else text
                if isinstance(out[key], str):
                    errors[key] = [NUMBER]
        elif key == "phones":
            out[key] = [p for p in SPLIT.split(text) if p]
        elif key == "consent_on":
            if text:
                out[key] = text[:10]  # a spreadsheet date reads as "2026-03-01 00:00:00"
        elif text:
            out[key] = text
    household = {k: v for k, v in out.items() if k in HOUSEHOLD_KEYS}
    resident = {k: v for k, v in out.items() if k not in HOUSEHOLD_KEYS}
    keep = not any(raw[k] for k in SEALED_KEYS)
    return {"household": household, "resident": resident, "keep_sealed": keep}, errors


def _flat_errors(messages: dict) -> dict:
    """RegisterRow's nested messages by the file's column keys."""
    flat = {}
    for part in ("household", "resident"):
        inner = messages.get(part, {})
        if isinstance(inner, dict):
            flat.update(inner)
    return flat


def validate_rows(rows: Iterable[dict]):
    """→ (good [(row number, data)], errors [{row, errors}], duplicates
    [{row, kind, other}]); row 2 is the first after the header, as in the
    spreadsheet. Duplicates (the same person twice in a room, one phone in
    two rooms) are flagged, not refused."""
    good, errors = [], []
    schema = RegisterRow()
    for number, row in enumerate(rows, start=2):
        data, found = to_input(row)
        try:
            loaded = schema.load(data)
        except ValidationError as exc:
            found = {**_flat_errors(exc.messages), **found}
        if found:
            errors.append({"row": number, "errors": found})
        else:
            good.append((number, loaded))
    return good, errors, duplicates_in(good)


def duplicates_in(good) -> list[dict]:
    people: dict[tuple, int] = {}
    phones: dict[str, tuple] = {}
    found = []
    for number, data in good:
        h, r = data["household"], data["resident"]
        place = (h["building"], h["unit"], h["room"])
        person = (*place, r["name"], r["birth_year"])
        if person in people:
            found.append({"row": number, "kind": "person", "other": people[person]})
        people.setdefault(person, number)
        for phone in h.get("phones") or []:
            seen = phones.setdefault(phone, (place, number))
            if seen[0] != place:
                found.append({"row": number, "kind": "phone", "other": seen[1]})
    return found


def export_row(household: dict, resident: dict, sealed: bool) -> list:
    """One resident with their household's columns, in the office's words."""
    values = {**{k: household.get(k) for k in HOUSEHOLD_KEYS}, **resident}
    values["phones"] = " ".join(household.get("phones") or [])
    row = []
    for key, _ in COLUMNS:
        value = values.get(key)
        if key in SEALED_KEYS and not sealed:
            value = ""
        elif key in WORDS and value:
            value = WORDS[key].get(value, value)
        elif isinstance(value, bool):
            value = "是" if value else "否"
        row.append("" if value is None else str(value))
    return row
