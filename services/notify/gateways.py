"""SMS and voice calls to residents through China's gateways: Alibaba Cloud
SMS (Dysmsapi SendSms), Tencent Cloud SMS (SendSms 2021-01-11), and voice
notification (语音通知) by Alibaba Cloud (Dyvmsapi SingleCallByTts) or
Tencent Cloud (VMS SendTtsVoice 2020-09-02).

Chinese SMS is template-based: a message is an approved template code and
its parameters, never free text. Each event maps to a code from the
configuration (`LINLI_SMS_TEMPLATES`, `LINLI_VOICE_TEMPLATES`) and to
parameters taken from the notification's context (`params_for`); an event
without a code is not sent on that channel (the inbox has it).

A resident's channel is `sms://13812345678` or `voice://13812345678`; the
office configures which gateway carries it (`LINLI_SMS_GATEWAY`).

Signing: Tencent's official SDKs (tencentcloud-sdk-python-sms and -vms,
about 100 KB with their common part, needing only `requests`) sign
TC3-HMAC-SHA256 and take an endpoint and scheme, so they are used. Alibaba's SDKs
(alibabacloud-dysmsapi20170525 + dyvmsapi) pull in darabonba-core, aiohttp,
APScheduler, alibabacloud-credentials and more (about 10 MB of wheels):
Linli signs Alibaba's RPC requests itself (signature v1, HMAC-SHA1, the
`POP` scheme), about twenty lines, tested against a receiver that verifies
the signature as Alibaba does.

Errors returned never hold the phone number or a key."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import requests

from services.common import contract
from services.common.i18n import N_, translate

SCHEMES = ("sms", "voice")
GATEWAYS = {"sms": ("aliyun", "tencent"), "voice": ("aliyun", "tencent")}


class Refusal(str):
    """A gateway's answer that a retry cannot mend (a rate limit, a number
    that is invalid or blacklisted, a wrong key or template): the delivery
    moves on to the next channel at once."""

    permanent = True


# --- Events → parameters ---

# Per-parameter length limits, in characters (a Chinese character, letter,
# digit or punctuation mark counts as one):
# - Alibaba Cloud SMS, notification templates applied for after 2018-01-10:
#   each variable 1–35 characters (Alibaba's template variable rules;
#   verification codes 4–6). Voice TTS variables: taken as the same.
# - Tencent Cloud SMS (正文模板审核标准 / 实名认证 notes, 382/40653):
#   personal-verified accounts at most 12 characters per variable
#   (verification codes 6 digits); enterprise-verified accounts have no
#   per-variable limit (500 characters in all). Linli assumes the stricter 12
#   unless LINLI_TENCENT_SMS_PARAM_LIMIT says otherwise (0 = no limit).
#   Tencent voice (VMS) template variables: the same limit.
# Links may not be variables on either gateway: the approved template holds
# the site (e.g. https://linli.example/t/${code}) and Linli passes the code.
ALIYUN_PARAM_LIMIT = 35
TENCENT_PARAM_LIMIT = 12

NEAR_TIME = N_("soon")
AT_HOME = N_("your home")

# The order matters for Tencent (TemplateParamSet is positional: {1}, {2}…);
# Alibaba takes them by name (${name}). Suggested template texts: README.
EVENT_PARAMS = {
    # Who is coming and when — a name such as 王师傅, never a phone.
    "assigned": ("name", "time", "place"),
    "completed": ("name", "service"),
    # The 回访: the rating link's code; "reply 1 satisfied / 2 not solved"
    # is fixed text of the approved template.
    "follow_up": ("service", "code"),
    "extended": ("service", "days", "due"),
    "closed": ("service", "code"),
    # The morning check-in text (报平安): fixed text, "reply 1 if all is well".
    "checkin": (),
}
# The messages that matter enough for a call.
VOICE_EVENTS = ("assigned", "follow_up")


def params_for(template: str, language: str, context: dict) -> list[list[str]] | None:
    """[[name, value], …] for an event a gateway can carry, else None."""
    names = EVENT_PARAMS.get(template)
    if names is None:
        return None
    category = contract.CATEGORY_BY_CODE.get(context.get("category", ""))
    values = {
        "name": context.get("volunteer_name") or "",
        "time": context.get("appointment") or translate(NEAR_TIME, language),
        "place": context.get("place") or translate(AT_HOME, language),
        "service": category.name(language) if category else "",
        "code": context.get("tracking_code") or "",
        "days": str(context.get("days", "")),
        "due": str(context.get("due", "")),
    }
    return [[name, values[name]] for name in names]


BRACKETS = str.maketrans({"【": "(", "】": ")", "[": "(", "]": ")"})


def fit(value: str, limit: int | None) -> str:
    """A parameter the gateway accepts: no square brackets (they read as a
    signature), at most `limit` characters, cut with an ellipsis."""
    value = re.sub(r"\s+", " ", str(value).translate(BRACKETS)).strip() or "-"
    if limit and len(value) > limit:
        value = value[:limit - 1] + "…"
    return value


def is_gateway(url: str) -> bool:
    return url.partition("://")[0].lower() in SCHEMES


def phone_of(url: str) -> str:
    return "".join(ch for ch in url.partition("://")[2] if ch.isdigit() or ch == "+")


def valid(url: str) -> bool:
    return bool(contract.MOBILE.match(phone_of(url).removeprefix("+86")))


def applies(config: dict, url: str, template: str) -> bool:
    """Whether this channel carries this event: its gateway is configured
    and the event has an approved template code there."""
    kind = url.partition("://")[0].lower()
    settings = config.get("SMS" if kind == "sms" else "VOICE") or {}
    if not settings.get("gateway") or template not in settings.get("templates", {}):
        return False
    return kind == "sms" or template in VOICE_EVENTS


def send(config: dict, url: str, template: str, params: list[list[str]]) -> str | None:
    """One try; None when the gateway took it, else the error (a Refusal
    when retrying cannot help)."""
    kind = url.partition("://")[0].lower()
    settings = config["SMS" if kind == "sms" else "VOICE"]
    phone, code = phone_of(url), settings["templates"][template]
    timeout = config["CHANNEL_TIMEOUT"]
    try:
        if kind == "voice":
            sender = tencent_voice if settings["gateway"] == "tencent" else aliyun_voice
            return sender(settings, timeout, phone, code, params)
        if settings["gateway"] == "tencent":
            return tencent_sms(settings, timeout, phone, code, params)
        return aliyun_sms(settings, timeout, phone, code, params)
    except requests.Timeout:
        return "timed out"
    except requests.RequestException as exc:
        return f"unreachable: {type(exc).__name__}"


# --- Alibaba Cloud: RPC requests signed with signature v1 (HMAC-SHA1) ---


def pop_encode(value: str) -> str:
    """RFC 3986 percent-encoding as Alibaba's RPC signature wants it
    (space → %20, * → %2A, ~ kept)."""
    return quote(str(value), safe="~")


def aliyun_signature(method: str, params: dict, secret: str) -> str:
    """Signature v1: HMAC-SHA1 over METHOD&%2F&encode(sorted query), keyed
    with the secret and "&", Base64."""
    canonical = "&".join(f"{pop_encode(k)}={pop_encode(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{pop_encode('/')}&{pop_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_call(settings: dict, timeout: float, endpoint: str, action: str, fields: dict) -> dict:
    params = {
        "AccessKeyId": settings["key_id"], "Action": action, "Format": "JSON",
        "RegionId": settings.get("region") or "cn-hangzhou", "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
        "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25",
        **fields,
    }
    params["Signature"] = aliyun_signature("POST", params, settings["secret"])
    resp = requests.post(endpoint.rstrip("/") + "/", data=params, timeout=timeout)
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    answer.setdefault("_status", resp.status_code)
    return answer


# Codes that retrying cannot mend. Every "isv.*" code is the caller's
# (number, template, signature name, balance, limits); "isp.*" is Alibaba's
# own trouble and is retried.
ALIYUN_RATE_LIMITS = ("isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling")
ALIYUN_BAD_NUMBER = ("isv.MOBILE_NUMBER_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.MOBILE_COUNT_OVER_LIMIT")
ALIYUN_REFUSED = ("isv.", "SignatureDoesNotMatch", "InvalidAccessKeyId", "IncompleteSignature", "Forbidden",
                  "InvalidTimeStamp", "SignatureNonceUsed", "MissingParameter", "InvalidParameter")


def aliyun_verdict(answer: dict) -> str | None:
    code = str(answer.get("Code") or "")
    if code == "OK":
        return None
    status = answer.get("_status", 200)
    if not code:
        return f"HTTP {status}"
    text = f"{code} {answer.get('Message') or ''}".strip()[:200]
    if code.startswith(ALIYUN_RATE_LIMITS):
        return Refusal(f"rate limited: {text}")
    if code in ALIYUN_BAD_NUMBER:
        return Refusal(f"number refused: {text}")
    if code.startswith(ALIYUN_REFUSED):
        return Refusal(f"rejected: {text}")
    return f"gateway error: {text}"  # isp.SYSTEM_ERROR, ServiceUnavailable, 5xx: retried


def aliyun_sms(settings: dict, timeout: float, phone: str, code: str, params: list) -> str | None:
    limit = settings.get("param_limit", ALIYUN_PARAM_LIMIT)
    answer = aliyun_call(settings, timeout, settings["endpoint"], "SendSms", {
        "PhoneNumbers": phone.removeprefix("+86"), "SignName": settings["sign_name"], "TemplateCode": code,
        "TemplateParam": json.dumps({k: fit(v, limit) for k, v in params}, ensure_ascii=False)})
    return aliyun_verdict(answer)


def aliyun_voice(settings: dict, timeout: float, phone: str, code: str, params: list) -> str | None:
    fields = {"CalledNumber": phone.removeprefix("+86"), "TtsCode": code, "PlayTimes": "2",
              "TtsParam": json.dumps({k: fit(v, ALIYUN_PARAM_LIMIT) for k, v in params}, ensure_ascii=False)}
    if settings.get("show_number"):
        fields["CalledShowNumber"] = settings["show_number"]
    return aliyun_verdict(aliyun_call(settings, timeout, settings["endpoint"], "SingleCallByTts", fields))


# --- Tencent Cloud: the official SDKs sign (TC3-HMAC-SHA256) ---

TENCENT_RATE_LIMITS = ("LimitExceeded", "RequestLimitExceeded")
TENCENT_BAD_NUMBER = ("InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
                      "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                      "FailedOperation.PhoneNumberParseFail", "InvalidParameterValue.CalledNumberVerifyFail")
# Tencent's own trouble, retried, though voice files a timeout upstream under FailedOperation.
TENCENT_TRANSIENT = ("InternalError", "FailedOperation.AccessUpstreamTimeout")
TENCENT_REFUSED = ("AuthFailure", "FailedOperation", "InvalidParameter", "MissingParameter",
                   "UnauthorizedOperation", "UnsupportedOperation", "UnknownParameter")


def tencent_verdict(code: str, message: str) -> str | None:
    if code == "Ok":
        return None
    text = f"{code} {message}".strip()[:200]
    if code.startswith(TENCENT_TRANSIENT):
        return f"gateway error: {text}"
    if code.startswith(TENCENT_RATE_LIMITS):
        return Refusal(f"rate limited: {text}")
    if code.startswith(TENCENT_BAD_NUMBER):
        return Refusal(f"number refused: {text}")
    if code.startswith(TENCENT_REFUSED):
        return Refusal(f"rejected: {text}")
    return f"gateway error: {text}"  # network errors and anything unknown: retried


def tencent_call(client_class, action: str, request, settings: dict, timeout: float):
    """(the SDK's response, None) or (None, the verdict on its error)."""
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    where = urlsplit(settings["endpoint"])
    profile = ClientProfile(httpProfile=HttpProfile(protocol=where.scheme, endpoint=where.netloc,
                                                    reqTimeout=max(1, round(timeout))))
    client = client_class(credential.Credential(settings["key_id"], settings["secret"]),
                          settings.get("region") or "ap-guangzhou", profile)
    try:
        return getattr(client, action)(request), None
    except TencentCloudSDKException as exc:
        if exc.get_code() in ("ClientNetworkError", "ServerNetworkError"):
            return None, f"unreachable: {exc.get_code()}"
        return None, tencent_verdict(exc.get_code() or "", exc.get_message() or "") or "gateway error"


def e164(phone: str) -> str:
    return phone if phone.startswith("+") else f"+86{phone}"


def tencent_sms(settings: dict, timeout: float, phone: str, code: str, params: list) -> str | None:
    from tencentcloud.sms.v20210111 import models, sms_client

    limit = settings.get("param_limit", TENCENT_PARAM_LIMIT)
    request = models.SendSmsRequest()
    request.PhoneNumberSet = [e164(phone)]
    request.SmsSdkAppId = settings["app_id"]
    request.SignName = settings["sign_name"]
    request.TemplateId = code
    request.TemplateParamSet = [fit(v, limit) for _, v in params]
    response, error = tencent_call(sms_client.SmsClient, "SendSms", request, settings, timeout)
    if error:
        return error
    statuses = response.SendStatusSet or []
    if not statuses:
        return "gateway error: no SendStatusSet"
    return tencent_verdict(statuses[0].Code or "", statuses[0].Message or "")


def tencent_voice(settings: dict, timeout: float, phone: str, code: str, params: list) -> str | None:
    """Tencent Cloud voice notification (VMS SendTtsVoice 2020-09-02): the
    call is placed when the answer holds a CallId; errors come as the
    request's error, classed as for SMS."""
    from tencentcloud.vms.v20200902 import models, vms_client

    request = models.SendTtsVoiceRequest()
    request.CalledNumber = e164(phone)
    request.VoiceSdkAppid = settings["app_id"]
    request.TemplateId = code
    request.TemplateParamSet = [fit(v, settings.get("param_limit", TENCENT_PARAM_LIMIT)) for _, v in params]
    request.PlayTimes = 2
    response, error = tencent_call(vms_client.VmsClient, "SendTtsVoice", request, settings, timeout)
    if error:
        return error
    if not (response.SendStatus and response.SendStatus.CallId):
        return "gateway error: no CallId"
    return None
