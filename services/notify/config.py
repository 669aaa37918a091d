"""Notification's configuration, read from the environment once at start-up
(services.common.settings): the shared defaults with the community's quiet
hours (which new recipients start with), the robot channels' addresses and
time-out, and how long a worker's claim on a delivery lasts."""
from services.common.settings import base_config, seconds, text

from .channels import BASE_URLS


def load() -> dict:
    cfg = base_config("notify")
    cfg["CHANNEL_BASE_URLS"] = {name: text(f"LINLI_{name}_BASE_URL", default).rstrip("/")
                                for name, default in BASE_URLS.items()}
    # One try at a channel gives up after this; the delivery is tried again later.
    cfg["CHANNEL_TIMEOUT"] = seconds("LINLI_CHANNEL_TIMEOUT", 10.0)
    # A worker that died mid-send loses its claim after this; the sweep then
    # tries again (the receiver may get the message twice: the
    # X-Linli-Dedupe-Key header on webhooks lets it tell).
    cfg["DELIVERY_LEASE_SECONDS"] = seconds("LINLI_DELIVERY_LEASE_SECONDS", 90.0)
    return cfg
