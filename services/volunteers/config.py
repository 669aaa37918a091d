"""Matching's configuration: the shared defaults read from the environment
(services.common.settings)."""
from services.common.settings import base_config


def load() -> dict:
    return base_config("volunteers")
