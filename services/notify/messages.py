"""Message templates per event and language: a title, a short form for
SMS and IM, a full form for email. Rendered in Jinja's sandbox, since the
context comes from other services' messages."""
from __future__ import annotations

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from services.common import contract

ENV = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, trim_blocks=True)

TEMPLATES = {
    ("offer", "zh-CN"): (
        "邻里：有邻居需要{{ category_name }}",
        "【邻里】{{ building }}有邻居需要{{ category_name }}，电话{{ masked_phone }}。查看并接单：{{ offer_url }}",
        "您好！\n\n{{ building }}的邻居需要{{ category_name }}：\n{{ summary }}\n"
        "{% if window_start %}时间：{{ window_start }} 至 {{ window_end }}\n{% endif %}"
        "联系电话：{{ masked_phone }}（接单后显示完整联系方式）\n\n查看并接单或婉拒：{{ offer_url }}\n\n谢谢您！——邻里",
    ),
    ("offer", "en"): (
        "Linli: a neighbour needs {{ category_name }}",
        "[Linli] A neighbour in {{ building }} needs {{ category_name }} ({{ masked_phone }}). See and accept: {{ offer_url }}",
        "Hello,\n\nA neighbour in {{ building }} needs {{ category_name }}:\n"
        "{{ summary }}\n{% if window_start %}When: {{ window_start }} to {{ window_end }}\n{% endif %}"
        "Phone: {{ masked_phone }} (the full contact is shown once you accept)\n\n"
        "Accept or decline: {{ offer_url }}\n\nThank you! — Linli",
    ),
    ("assigned", "zh-CN"): (
        "邻里：您的请求已有志愿者接单",
        "【邻里】您的{{ category_name }}请求已由志愿者{{ volunteer_name }}接单，对方会与您联系。查看：{{ tracking_url }}",
        "您好！\n\n您的{{ category_name }}请求（查询码 {{ tracking_code }}）已由志愿者{{ volunteer_name }}接单，"
        "对方会尽快与您联系。\n\n查看进度：{{ tracking_url }}\n\n——邻里",
    ),
    ("assigned", "en"): (
        "Linli: a volunteer took your request",
        "[Linli] {{ volunteer_name }} took your {{ category_name }} request and will contact you. Track: {{ tracking_url }}",
        "Hello,\n\nYour {{ category_name }} request (tracking code {{ tracking_code }}) was taken by "
        "{{ volunteer_name }}, who will contact you soon.\n\nTrack it: {{ tracking_url }}\n\n— Linli",
    ),
    ("escalation", "zh-CN"): (
        "邻里：请求需要社区处理（{{ category_name }}）",
        "【邻里】{{ leader_name }}您好，{{ building }}{% if unit %}{{ unit }}单元{% endif %}有一项{{ category_name }}请求需要您处理（{{ reason_text }}），居民电话{{ masked_phone }}。",
        "{{ leader_name }}您好！\n\n{{ building }}{% if unit %}{{ unit }}单元{% endif %}的居民提交了{{ category_name }}请求，"
        "需要您处理（{{ reason_text }}）：\n{{ summary }}\n\n居民电话：{{ masked_phone }}\n\n——邻里",
    ),
    ("escalation", "en"): (
        "Linli: a request needs the community ({{ category_name }})",
        "[Linli] {{ leader_name }}, a {{ category_name }} request from {{ building }} needs you ({{ reason_text }}). Phone {{ masked_phone }}.",
        "Dear {{ leader_name }},\n\nA resident of {{ building }}{% if unit %}, unit {{ unit }}{% endif %} asked for "
        "{{ category_name }}, which needs you ({{ reason_text }}):\n{{ summary }}\n\nPhone: {{ masked_phone }}\n\n— Linli",
    ),
}

REASONS = {
    "staff_only": {"zh-CN": "由社区工作人员处理的事项", "en": "a matter for community staff"},
    "no_candidate": {"zh-CN": "暂无可接单的志愿者", "en": "no volunteer is available"},
}


COMPILED = {key: tuple(ENV.from_string(part) for part in parts) for key, parts in TEMPLATES.items()}


def render(template: str, language: str, context: dict) -> tuple[str, str, str]:
    """(title, short, full) for one event in one language."""
    ctx = dict(context)
    category = contract.CATEGORY_BY_CODE.get(ctx.get("category", ""))
    ctx["category_name"] = category.name(language) if category else ""
    if "reason" in ctx:
        ctx["reason_text"] = REASONS.get(ctx["reason"], {}).get(language, ctx["reason"])
    return tuple(part.render(ctx) for part in COMPILED[(template, language)])
