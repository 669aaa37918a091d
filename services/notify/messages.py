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
        "【邻里】{{ building }}有邻居需要{{ category_name }}：{{ summary[:24] }}（{{ masked_phone }}）。查看并接单：{{ offer_url }}",
        "您好！\n\n{{ building }}的邻居需要{{ category_name }}：\n{{ summary }}\n"
        "{% if window_start %}时间：{{ window_start }} 至 {{ window_end }}\n{% endif %}"
        "联系电话：{{ masked_phone }}（接单后显示完整联系方式）\n\n查看并接单或婉拒：{{ offer_url }}\n\n谢谢您！——邻里",
    ),
    ("offer", "en"): (
        "Linli: a neighbour needs {{ category_name }}",
        "[Linli] A neighbour in {{ building }} needs {{ category_name }}: {{ summary[:40] }} ({{ masked_phone }}). See and accept: {{ offer_url }}",
        "Hello,\n\nA neighbour in {{ building }} needs {{ category_name }}:\n"
        "{{ summary }}\n{% if window_start %}When: {{ window_start }} to {{ window_end }}\n{% endif %}"
        "Phone: {{ masked_phone }} (the full contact is shown once you accept)\n\n"
        "Accept or decline: {{ offer_url }}\n\nThank you! — Linli",
    ),
    ("assigned", "zh-CN"): (
        "邻里：您的请求已有志愿者接单",
        "{% if place %}【邻里】您的{{ category_name }}已预约：{{ appointment }}，{{ place }}，{{ volunteer_name }}为您服务。查看：{{ tracking_url }}"
        "{% else %}【邻里】您的{{ category_name }}请求已由志愿者{{ volunteer_name }}接单，对方会与您联系。查看：{{ tracking_url }}{% endif %}",
        "您好！\n\n{% if place %}您的{{ category_name }}（查询码 {{ tracking_code }}）已预约在{{ appointment }}，地点：{{ place }}，"
        "由{{ volunteer_name }}为您服务。{% else %}您的{{ category_name }}请求（查询码 {{ tracking_code }}）已由志愿者{{ volunteer_name }}接单，"
        "对方会尽快与您联系。{% endif %}\n\n查看进度：{{ tracking_url }}\n\n——邻里",
    ),
    ("assigned", "en"): (
        "Linli: a volunteer took your request",
        "{% if place %}[Linli] Your {{ category_name }} is booked: {{ appointment }} at {{ place }}, with {{ volunteer_name }}. Track: {{ tracking_url }}"
        "{% else %}[Linli] {{ volunteer_name }} took your {{ category_name }} request and will contact you. Track: {{ tracking_url }}{% endif %}",
        "Hello,\n\n{% if place %}Your {{ category_name }} (tracking code {{ tracking_code }}) is booked for {{ appointment }} "
        "at {{ place }}, with {{ volunteer_name }}.{% else %}Your {{ category_name }} request (tracking code {{ tracking_code }}) "
        "was taken by {{ volunteer_name }}, who will contact you soon.{% endif %}\n\nTrack it: {{ tracking_url }}\n\n— Linli",
    ),
    ("reminder", "zh-CN"): (
        "邻里：任务提醒",
        "【邻里】提醒：{{ building }}的{{ category_name }}请在{{ due }}前完成。查看：{{ portal_url }}",
        "您好！\n\n提醒您：{{ building }}的{{ category_name }}任务请在{{ due }}前完成。"
        "如有困难，请在志愿者页面说明，我们会另行安排。\n{{ portal_url }}\n\n——邻里",
    ),
    ("reminder", "en"): (
        "Linli: a reminder",
        "[Linli] Reminder: the {{ category_name }} in {{ building }} is due by {{ due }}. See: {{ portal_url }}",
        "Hello,\n\nA reminder: the {{ category_name }} task in {{ building }} is due by {{ due }}. "
        "If you cannot make it, say so in the portal and we will find someone else.\n{{ portal_url }}\n\n— Linli",
    ),
    ("digest", "zh-CN"): (
        "邻里：{{ grid_name }}今日概况",
        "【邻里】{{ grid_name }}：进行中{{ open }}件，超时{{ overdue }}件，待社区处理{{ escalated }}件。",
        "{{ leader_name }}您好！\n\n{{ grid_name }}今日概况：进行中{{ open }}件，超时{{ overdue }}件，待社区处理{{ escalated }}件。\n"
        "{% for line in items %}- {{ line }}\n{% endfor %}\n——邻里",
    ),
    ("digest", "en"): (
        "Linli: {{ grid_name }} today",
        "[Linli] {{ grid_name }}: {{ open }} open, {{ overdue }} overdue, {{ escalated }} escalated.",
        "Dear {{ leader_name }},\n\n{{ grid_name }} today: {{ open }} open, {{ overdue }} overdue, "
        "{{ escalated }} escalated.\n{% for line in items %}- {{ line }}\n{% endfor %}\n— Linli",
    ),
    ("offer_withdrawn", "zh-CN"): (
        "邻里：这项邀请已结束",
        "【邻里】{{ building }}的{{ category_name }}邀请已结束（{{ reason_text }}），无需再处理。谢谢您！",
        "您好！\n\n{{ building }}的{{ category_name }}邀请已结束（{{ reason_text }}），您无需再处理。\n\n谢谢您！——邻里",
    ),
    ("offer_withdrawn", "en"): (
        "Linli: an offer is closed",
        "[Linli] The {{ category_name }} offer in {{ building }} is closed ({{ reason_text }}); nothing more to do. Thank you!",
        "Hello,\n\nThe {{ category_name }} offer in {{ building }} is closed ({{ reason_text }}); there is nothing more "
        "for you to do.\n\nThank you! — Linli",
    ),
    ("completed", "zh-CN"): (
        "邻里：服务已完成，请您评价",
        "【邻里】您的{{ category_name }}已由{{ volunteer_name }}完成。满意吗？请评价：{{ tracking_url }}",
        "您好！\n\n您的{{ category_name }}（查询码 {{ tracking_code }}）已由{{ volunteer_name }}完成。\n"
        "请打开下面的链接告诉我们是否满意，也可以向志愿者道一声谢：\n{{ tracking_url }}\n\n——邻里",
    ),
    ("completed", "en"): (
        "Linli: done — how was it?",
        "[Linli] {{ volunteer_name }} completed your {{ category_name }}. How was it? Rate: {{ tracking_url }}",
        "Hello,\n\n{{ volunteer_name }} completed your {{ category_name }} (tracking code {{ tracking_code }}).\n"
        "Tell us how it went, and thank the volunteer if you like:\n{{ tracking_url }}\n\n— Linli",
    ),
    ("magic_link", "zh-CN"): (
        "邻里：志愿者登录链接",
        "【邻里】登录链接（{{ minutes }}分钟内有效，仅可用一次）：{{ login_url }}",
        "您好！\n\n请点击下面的链接登录邻里志愿者页面（{{ minutes }}分钟内有效，仅可用一次）：\n{{ login_url }}\n\n"
        "如果不是您本人操作，请忽略本消息。——邻里",
    ),
    ("magic_link", "en"): (
        "Linli: your sign-in link",
        "[Linli] Sign in (valid {{ minutes }} minutes, once): {{ login_url }}",
        "Hello,\n\nSign in to Linli with this link (valid for {{ minutes }} minutes, once):\n{{ login_url }}\n\n"
        "If you did not ask for it, ignore this message. — Linli",
    ),
    ("thanks", "zh-CN"): (
        "邻里：居民的评价",
        "【邻里】居民对您的{{ category_name }}服务打了{{ rating }}星{% if thanks %}，并向您道谢{% endif %}。{{ comment }}",
        "您好！\n\n居民对您的{{ category_name }}服务打了{{ rating }}星{% if thanks %}，并向您道谢{% endif %}。\n{{ comment }}\n\n"
        "感谢您为邻居们付出！——邻里",
    ),
    ("thanks", "en"): (
        "Linli: a resident's feedback",
        "[Linli] A resident rated your {{ category_name }} {{ rating }}/5{% if thanks %} and thanks you{% endif %}. {{ comment }}",
        "Hello,\n\nA resident rated your {{ category_name }} {{ rating }} out of 5{% if thanks %} and thanks you{% endif %}.\n"
        "{{ comment }}\n\nThank you for helping your neighbours! — Linli",
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
    ("follow_up", "zh-CN"): (
        "邻里：您的{{ category_name }}办好了吗？",
        "【邻里】您的{{ category_name }}请求已完成。请确认是否解决并评价，没解决我们会重新处理：{{ tracking_url }}",
        "您好！\n\n您的{{ category_name }}请求（查询码 {{ tracking_code }}）已完成。\n"
        "请确认问题是否解决，并给这次服务打分；如果没有解决，社区会重新处理。\n\n{{ tracking_url }}\n\n——邻里",
    ),
    ("follow_up", "en"): (
        "Linli: is your {{ category_name }} done?",
        "[Linli] Your {{ category_name }} request is complete. Please confirm and rate it; if it is not solved, we reopen it: {{ tracking_url }}",
        "Hello,\n\nYour {{ category_name }} request (tracking code {{ tracking_code }}) is complete.\n"
        "Please confirm it is solved and rate the service; if it is not solved, the community reopens it.\n\n"
        "{{ tracking_url }}\n\n— Linli",
    ),
}

REASONS = {
    "staff_only": {"zh-CN": "由社区工作人员处理的事项", "en": "a matter for community staff"},
    "no_candidate": {"zh-CN": "暂无可接单的志愿者", "en": "no volunteer is available"},
    "all_declined": {"zh-CN": "志愿者都无法接单", "en": "every volunteer asked declined"},
    "not_taken": {"zh-CN": "超时无人接单", "en": "nobody took it in time"},
    "overdue": {"zh-CN": "超过完成时限", "en": "it is past its completion deadline"},
    "taken": {"zh-CN": "已有其他志愿者接单", "en": "another volunteer took it"},
    "escalated": {"zh-CN": "已转社区处理", "en": "passed to community staff"},
    "cancelled": {"zh-CN": "居民已取消", "en": "the request was cancelled"},
    "reassigned": {"zh-CN": "社区已另行安排", "en": "staff assigned it to someone else"},
    "staff": {"zh-CN": "社区工作人员转交", "en": "passed on by community staff"},
    "handed_back": {"zh-CN": "被退回，需重新分派", "en": "handed back, to be routed again"},
    "reopened": {"zh-CN": "居民对处理结果不满意", "en": "the resident is not satisfied"},
}


COMPILED = {key: tuple(ENV.from_string(part) for part in parts) for key, parts in TEMPLATES.items()}

# Context values that are keys: a sign-in link signs in, an offer link shows
# the offer. Channels get them; the in-app inbox copy never holds them (a
# database copy or a look at the inbox must not give working links).
SECRET_CONTEXT = {"magic_link": ("login_url",), "offer": ("offer_url",)}
KEY_SENT = {"zh-CN": "（链接已发送到您的消息渠道）", "en": "(link sent to your message channel)"}


def carries_key(template: str) -> bool:
    return template in SECRET_CONTEXT


def render_for_inbox(template: str, language: str, context: dict) -> tuple[str, str, str]:
    """The message as the inbox keeps it: every key replaced by a note."""
    hidden = {name: KEY_SENT[language] for name in SECRET_CONTEXT.get(template, ())}
    return render(template, language, {**context, **hidden})


def render(template: str, language: str, context: dict) -> tuple[str, str, str]:
    """(title, short, full) for one event in one language."""
    ctx = dict(context)
    category = contract.CATEGORY_BY_CODE.get(ctx.get("category", ""))
    ctx["category_name"] = category.name(language) if category else ""
    if "reason" in ctx:
        ctx["reason_text"] = REASONS.get(ctx["reason"], {}).get(language, ctx["reason"])
    return tuple(part.render(ctx) for part in COMPILED[(template, language)])
