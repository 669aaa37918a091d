"""Message templates per event: a title, a short form for SMS and IM, a full
form for email, in each language the catalogue has (services.common.i18n).
Rendered in Jinja's sandbox, since the context comes from other services'
messages."""
from __future__ import annotations

from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from services.common import contract
from services.common.i18n import N_, translate

ENV = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, trim_blocks=True)

# English sources marked for the catalogue (services.common.i18n); each
# language's text comes from it, zh-CN first.
TEMPLATES = {
    "offer": (
        N_("Linli: a neighbour needs {{ category_name }}"),
        N_("[Linli] A neighbour in {{ building }} needs {{ category_name }}: {{ summary[:40] }} "
           "({{ masked_phone }}). See and accept: {{ offer_url }}"),
        N_("Hello,\n\nA neighbour in {{ building }} needs {{ category_name }}:\n"
           "{{ summary }}\n{% if window_start %}When: {{ window_start }} to {{ window_end }}\n"
           "{% endif %}Phone: {{ masked_phone }} (the full contact is shown once you accept)\n"
           "\nAccept or decline: {{ offer_url }}\n\nThank you! — Linli"),
    ),
    "assigned": (
        N_("Linli: a volunteer took your request"),
        N_("{% if place %}[Linli] Your {{ category_name }} is booked: {{ appointment }} at {{ place }}, "
           "with {{ volunteer_name }}. Track: {{ tracking_url }}{% else %}[Linli] {{ volunteer_name }} "
           "took your {{ category_name }} request and will contact you. Track: {{ tracking_url }}{% endif %}"),
        N_("Hello,\n\n{% if place %}Your {{ category_name }} (tracking code {{ tracking_code }}) is "
           "booked for {{ appointment }} at {{ place }}, with {{ volunteer_name }}.{% else %}Your "
           "{{ category_name }} request (tracking code {{ tracking_code }}) was taken by {{ volunteer_name }}, "
           "who will contact you soon.{% endif %}\n\nTrack it: {{ tracking_url }}\n"
           "\n— Linli"),
    ),
    "reminder": (
        N_("Linli: a reminder"),
        N_("[Linli] Reminder: the {{ category_name }} in {{ building }} is due by {{ due }}. See: "
           "{{ portal_url }}"),
        N_("Hello,\n\nA reminder: the {{ category_name }} task in {{ building }} is due by {{ due }}. "
           "If you cannot make it, say so in the portal and we will find someone else.\n"
           "{{ portal_url }}\n\n— Linli"),
    ),
    "digest": (
        N_("Linli: {{ grid_name }} today"),
        N_("[Linli] {{ grid_name }}: {{ open }} open, {{ overdue }} overdue, {{ escalated }} escalated."),
        N_("Dear {{ leader_name }},\n\n{{ grid_name }} today: {{ open }} open, {{ overdue }} overdue, "
           "{{ escalated }} escalated.\n{% for line in items %}- {{ line }}\n"
           "{% endfor %}\n— Linli"),
    ),
    "offer_withdrawn": (
        N_("Linli: an offer is closed"),
        N_("[Linli] The {{ category_name }} offer in {{ building }} is closed ({{ reason_text }}); "
           "nothing more to do. Thank you!"),
        N_("Hello,\n\nThe {{ category_name }} offer in {{ building }} is closed ({{ reason_text }}); "
           "there is nothing more for you to do.\n\nThank you! — Linli"),
    ),
    "completed": (
        N_("Linli: done — how was it?"),
        N_("[Linli] {{ volunteer_name }} completed your {{ category_name }}. How was it? Rate: {{ tracking_url }}"),
        N_("Hello,\n\n{{ volunteer_name }} completed your {{ category_name }} (tracking code {{ tracking_code }}).\n"
           "Tell us how it went, and thank the volunteer if you like:\n"
           "{{ tracking_url }}\n\n— Linli"),
    ),
    "magic_link": (
        N_("Linli: your sign-in link"),
        N_("[Linli] Sign in (valid {{ minutes }} minutes, once): {{ login_url }}"),
        N_("Hello,\n\nSign in to Linli with this link (valid for {{ minutes }} minutes, once):\n"
           "{{ login_url }}\n\nIf you did not ask for it, ignore this message. — Linli"),
    ),
    "thanks": (
        N_("Linli: a resident's feedback"),
        N_("[Linli] A resident rated your {{ category_name }} {{ rating }}/5{% if thanks %} and "
           "thanks you{% endif %}. {{ comment }}"),
        N_("Hello,\n\nA resident rated your {{ category_name }} {{ rating }} out of 5{% if thanks %} "
           "and thanks you{% endif %}.\n{{ comment }}\n"
           "\nThank you for helping your neighbours! — Linli"),
    ),
    "escalation": (
        N_("Linli: a request needs the community ({{ category_name }})"),
        N_("[Linli] {{ leader_name }}, a {{ category_name }} request from {{ building }} needs you "
           "({{ reason_text }}). Phone {{ masked_phone }}."),
        N_("Dear {{ leader_name }},\n\nA resident of {{ building }}{% if unit %}, unit {{ unit }}{% endif %} "
           "asked for {{ category_name }}, which needs you ({{ reason_text }}):\n"
           "{{ summary }}\n\nPhone: {{ masked_phone }}\n"
           "\n— Linli"),
    ),
    "follow_up": (
        N_("Linli: is your {{ category_name }} done?"),
        N_("[Linli] Your {{ category_name }} request is complete. Please confirm and rate it; if "
           "it is not solved, we reopen it: {{ tracking_url }}"),
        N_("Hello,\n\nYour {{ category_name }} request (tracking code {{ tracking_code }}) is complete.\n"
           "Please confirm it is solved and rate the service; if it is not solved, the community "
           "reopens it.\n\n{{ tracking_url }}\n\n— Linli"),
    ),
    "extended": (
        N_("Linli: more time for your {{ category_name }}"),
        N_("[Linli] Your {{ category_name }} request needs more time: {{ days }} more working days, "
           "by {{ due }}. {{ why }} Track: {{ tracking_url }}"),
        N_("Hello,\n\nYour {{ category_name }} request (tracking code {{ tracking_code }}) needs more time: "
           "{{ days }} more working days, to be done by {{ due }}.\n{{ why }}\n\n{{ tracking_url }}\n\n— Linli"),
    ),
    "checkin": (
        N_("Linli: good morning — all well today?"),
        N_("[Linli] Good morning! All well today? Reply 1 to check in. Need help? Call the community "
           "office: {{ office_phone }}. Reply TD to stop these messages."),
        N_("Good morning,\n\nIs all well today? Reply 1 to this message to check in, or open your "
           "check-in page.\nIf you need help, call the community office: {{ office_phone }}.\n\n— Linli"),
    ),
    "closed": (
        N_("Linli: your {{ category_name }} request is closed"),
        N_("[Linli] Your {{ category_name }} request is closed. Not solved? Tell us: {{ tracking_url }}"),
        N_("Hello,\n\nYour {{ category_name }} request (tracking code {{ tracking_code }}) is closed.\n"
           "If it is not solved, tell us on its page:\n{{ tracking_url }}\n\n— Linli"),
    ),
}

REASONS = contract.REASONS


COMPILED = {(name, language): tuple(ENV.from_string(translate(part, language)) for part in parts)
            for name, parts in TEMPLATES.items() for language in contract.LANGUAGES}

# The context each template needs: the variables it names, where
# category_name comes from `category` and reason_text from `reason`.
DERIVED = {"category_name": None, "reason_text": "reason"}
VARIABLES = {name: sorted({DERIVED.get(v, v) for part in parts for language in contract.LANGUAGES
                           for v in meta.find_undeclared_variables(ENV.parse(translate(part, language)))} - {None})
             for name, parts in TEMPLATES.items()}

# Context values that are keys: a sign-in link signs in, an offer link shows
# the offer. Channels get them; the in-app inbox copy never holds them (a
# database copy or a look at the inbox must not give working links).
SECRET_CONTEXT = {"magic_link": ("login_url",), "offer": ("offer_url",)}
KEY_SENT = N_("(link sent to your message channel)")


def carries_key(template: str) -> bool:
    return template in SECRET_CONTEXT


def render_for_inbox(template: str, language: str, context: dict) -> tuple[str, str, str]:
    """The message as the inbox keeps it: every key replaced by a note."""
    hidden = {name: translate(KEY_SENT, language) for name in SECRET_CONTEXT.get(template, ())}
    return render(template, language, {**context, **hidden})


def render(template: str, language: str, context: dict) -> tuple[str, str, str]:
    """(title, short, full) for one event in one language."""
    ctx = dict(context)
    category = contract.CATEGORY_BY_CODE.get(ctx.get("category", ""))
    ctx["category_name"] = category.name(language) if category else ""
    if "reason" in ctx:
        reason = REASONS.get(ctx["reason"])
        ctx["reason_text"] = translate(reason, language) if reason else ctx["reason"]
    return tuple(part.render(ctx) for part in COMPILED[(template, language)])
