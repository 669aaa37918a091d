"""Intake's configuration: the shared defaults read from the environment
(services.common.settings); intake adds nothing of its own yet."""
from services.common.settings import base_config


def load() -> dict:
    return base_config("requests")
