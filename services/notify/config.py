"""Notification's configuration, read from the environment once at start-up
(services.common.settings): the shared defaults with the community's quiet
hours (which new recipients start with), the robot channels' addresses and
time-out, and how long a worker's claim on a delivery lasts."""
from services.common.settings import ConfigError, base_config, integer, json_object, seconds, text

from . import gateways
from .channels import BASE_URLS

# Where each gateway's API lives (LINLI_*_URL moves one: a proxy, or a local
# receiver in the tests).
ENDPOINTS = {"aliyun": "https://dysmsapi.aliyuncs.com", "tencent": "https://sms.tencentcloudapi.com",
             "aliyun_voice": "https://dyvmsapi.aliyuncs.com", "tencent_voice": "https://vms.tencentcloudapi.com"}
TEMPLATES_EXAMPLE = '{"assigned": "SMS_123456789", "follow_up": "SMS_123456790"}'


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
    cfg.update(gateway_config())
    return cfg


def gateway_config() -> dict:
    """SMS and voice (each Alibaba or Tencent) to residents: off unless
    LINLI_SMS_GATEWAY / LINLI_VOICE_GATEWAY name one. Their keys join the
    secrets checked at start-up (settings.OWN_SECRETS)."""
    cfg = {"SMS": {"gateway": None, "templates": {}}, "VOICE": {"gateway": None, "templates": {}}}
    sms, voice = text("LINLI_SMS_GATEWAY", ""), text("LINLI_VOICE_GATEWAY", "")
    for kind, name in (("SMS", sms), ("VOICE", voice)):
        if name and name not in gateways.GATEWAYS[kind.lower()]:
            raise ConfigError(f"LINLI_{kind}_GATEWAY must be one of {', '.join(gateways.GATEWAYS[kind.lower()])}, "
                              f"not {name!r}")
        templates = json_object(f"LINLI_{kind}_TEMPLATES", TEMPLATES_EXAMPLE)
        unknown = set(templates) - set(gateways.EVENT_PARAMS)
        if unknown:
            raise ConfigError(f"LINLI_{kind}_TEMPLATES: no such event {sorted(unknown)}; "
                              f"events: {sorted(gateways.EVENT_PARAMS)}")
        if name:
            cfg[kind] = {"gateway": name, "templates": templates}
    if "aliyun" in (sms, voice):
        cfg["ALIYUN_SECRET"] = text("LINLI_ALIYUN_ACCESS_KEY_SECRET", "")
        aliyun = {"key_id": text("LINLI_ALIYUN_ACCESS_KEY_ID", ""), "secret": cfg["ALIYUN_SECRET"],
                  "region": text("LINLI_ALIYUN_REGION", "cn-hangzhou"),
                  "sign_name": text("LINLI_SMS_SIGN_NAME", "")}
        if sms == "aliyun":
            cfg["SMS"].update(aliyun, endpoint=text("LINLI_ALIYUN_SMS_URL", ENDPOINTS["aliyun"]),
                              param_limit=integer("LINLI_ALIYUN_SMS_PARAM_LIMIT", gateways.ALIYUN_PARAM_LIMIT))
        if voice == "aliyun":
            cfg["VOICE"].update(aliyun, endpoint=text("LINLI_ALIYUN_VOICE_URL", ENDPOINTS["aliyun_voice"]),
                                # The number residents see calling (a 号码 bought with the voice service).
                                show_number=text("LINLI_VOICE_SHOW_NUMBER", ""))
    if "tencent" in (sms, voice):
        cfg["TENCENT_SECRET"] = text("LINLI_TENCENT_SECRET_KEY", "")
        tencent = {"key_id": text("LINLI_TENCENT_SECRET_ID", ""), "secret": cfg["TENCENT_SECRET"],
                   "region": text("LINLI_TENCENT_REGION", "ap-guangzhou"),
                   "param_limit": integer("LINLI_TENCENT_SMS_PARAM_LIMIT", gateways.TENCENT_PARAM_LIMIT)}
        if sms == "tencent":
            cfg["SMS"].update(tencent, app_id=text("LINLI_TENCENT_SMS_APP_ID", ""),
                              sign_name=text("LINLI_SMS_SIGN_NAME", ""),
                              endpoint=text("LINLI_TENCENT_SMS_URL", ENDPOINTS["tencent"]))
        if voice == "tencent":
            # Voice is an application of its own at Tencent (VoiceSdkAppid).
            cfg["VOICE"].update(tencent, app_id=text("LINLI_TENCENT_VOICE_APP_ID", ""),
                                endpoint=text("LINLI_TENCENT_VOICE_URL", ENDPOINTS["tencent_voice"]))
    # Residents' replies (上行) reach /sms/replies/<gateway>?key=…: off without a key.
    if reply_key := text("LINLI_SMS_REPLY_KEY", ""):
        cfg["SMS_REPLY_KEY"] = reply_key
    for kind in ("SMS", "VOICE"):
        if cfg[kind]["gateway"] == "tencent" and not cfg[kind]["app_id"]:
            raise ConfigError(f"LINLI_TENCENT_{kind}_APP_ID is not set: the application (SdkAppId) it goes out with")
    if sms and not cfg["SMS"].get("sign_name"):
        raise ConfigError("LINLI_SMS_SIGN_NAME is not set: the approved signature (签名) SMS go out with")
    return cfg
