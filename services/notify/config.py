"""Notification's configuration: the shared defaults read from the
environment (services.common.settings), with the community's quiet hours
(services.common.clock), which new recipients start with."""
from services.common.settings import base_config


def load() -> dict:
    return base_config("notify")
