"""Intake's configuration: the shared defaults read from the environment
(services.common.settings), and the Open311 keys given by the environment
(staff issue more through the API)."""
import os

from services.common.settings import base_config


def load() -> dict:
    cfg = base_config("requests")
    cfg["OPEN311_API_KEYS"] = os.environ.get("LINLI_OPEN311_API_KEYS", "")
    # Matching answers a request within seconds; silence this long means the message was lost.
    cfg["RESEND_AFTER_SECONDS"] = int(os.environ.get("LINLI_RESEND_AFTER_SECONDS", "120"))
    return cfg
