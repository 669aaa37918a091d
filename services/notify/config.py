"""Notification's configuration: the shared defaults read from the
environment (services.common.settings), and the quiet hours new recipients
start with."""
import os
from datetime import time

from services.common.settings import base_config


def quiet_hours(value: str) -> tuple[time, time]:
    """'21:00-07:00' (Asia/Shanghai) → (21:00, 07:00); equal ends: none."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise ValueError(f"LINLI_QUIET_HOURS must look like 21:00-07:00, not {value!r}") from None
    return start, end


def load() -> dict:
    cfg = base_config("notify")
    cfg["QUIET_HOURS"] = quiet_hours(os.environ.get("LINLI_QUIET_HOURS", "21:00-07:00"))
    return cfg
