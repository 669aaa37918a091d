"""The community service's configuration, read from the environment once at
start-up (services.common.settings): the shared defaults, the key that seals
the register's sensitive fields, and the daily check-in's deadline."""
from services.common import community
from services.common.roster import roster_settings
from services.common.settings import _secret, integer


def load() -> dict:
    from services.common.settings import base_config

    cfg = base_config("community")
    # Seals health, care needs and disability at rest (sealed.py). Checked
    # with the other secrets at start-up; rotating it needs a re-seal.
    cfg["REGISTER_KEY"] = _secret("LINLI_REGISTER_KEY", kept_as="register-key")
    # 报平安: a resident who chose the daily check-in and has not checked in
    # by this hour (Asia/Shanghai) gets a visitor sent.
    cfg["CHECKIN_DEADLINE_HOUR"] = integer("LINLI_CHECKIN_DEADLINE_HOUR", 10, minimum=0)
    # From this hour, those of them the register reaches by text get the
    # morning text ("reply 1"), once a day, when notify has an SMS gateway.
    cfg["CHECKIN_TEXT_HOUR"] = integer("LINLI_CHECKIN_TEXT_HOUR", 8, minimum=0)
    # Whom a visitor calls when a resident has no phone of their own.
    cfg["OFFICE_PHONE"] = community.load(cfg["COMMUNITY_FILE"])["community"]["office"]["phone"]
    # A register file is bounded like the volunteer roster.
    cfg.update(roster_settings())
    return cfg
