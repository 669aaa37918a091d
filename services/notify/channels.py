"""Sending one message on one channel.

WeCom group bots, DingTalk robots and Feishu/Lark bots answer HTTP 200 even
when they reject a message, with the verdict in the body (`errcode` /
`code` ≠ 0); Apprise looks only at the status and hard-codes their hosts.
Linli sends to those three itself, with a configurable base URL (so that
tests and private deployments can point them elsewhere) and reads the body.
Every other scheme (email, JSON/form webhooks, SMS gateways, WeCom apps…)
goes through Apprise.

Beware: Apprise's `wecom://` is Pushplus, not WeCom; WeCom bots are
`wecombot://KEY`.

Errors returned here never contain the channel URL: it is a secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import urllib.parse
import urllib.request

import apprise
import requests
import urllib3

from . import gateways

log = logging.getLogger(__name__)
# Apprise logs target URLs at INFO and DEBUG; channel URLs are secrets.
logging.getLogger("apprise").setLevel(logging.WARNING)
# Tencent's SDK can log requests (phone numbers) at DEBUG.
logging.getLogger("tencentcloud_sdk_common").setLevel(logging.WARNING)

OWN_SCHEMES = ("wecombot", "dingtalk", "feishu", "lark")


# Where each robot API lives; LINLI_<NAME>_BASE_URL moves one (a proxy, or
# a local receiver in the tests), read at start-up (config.py).
BASE_URLS = {"WECOM": "https://qyapi.weixin.qq.com", "DINGTALK": "https://oapi.dingtalk.com",
             "FEISHU": "https://open.feishu.cn", "LARK": "https://open.larksuite.com"}


def valid(url: str) -> bool:
    scheme, sep, rest = url.partition("://")
    if scheme.lower() in gateways.SCHEMES:
        return gateways.valid(url)
    if scheme in OWN_SCHEMES:
        return bool(sep and rest.strip("/"))
    return apprise.Apprise.instantiate(url) is not None


def send(config, url: str, title: str, body: str, dedupe_key: str = "") -> str | None:
    """One try; returns the error, or None when the channel took the message.
    `config` is notify's configuration (CHANNEL_BASE_URLS, CHANNEL_TIMEOUT)."""
    scheme, _, rest = url.partition("://")
    bases, timeout = config["CHANNEL_BASE_URLS"], config["CHANNEL_TIMEOUT"]
    if scheme.lower() in gateways.SCHEMES:
        # Chinese SMS and voice calls carry approved templates, never free text (gateways.send).
        return "an SMS or a call carries an approved template only"
    try:
        if scheme == "wecombot":
            return _wecom_bot(bases["WECOM"], timeout, rest, body)
        if scheme == "dingtalk":
            return _dingtalk(bases["DINGTALK"], timeout, rest, title, body)
        if scheme in ("feishu", "lark"):
            return _feishu(bases[scheme.upper()], timeout, rest, body)
    except requests.Timeout:
        return "timed out"
    except requests.RequestException as exc:
        return f"unreachable: {type(exc).__name__}"
    if _plain_json_webhook(url):
        return _json_webhook(url, timeout, title, body, dedupe_key)
    return _apprise(url, title, body, dedupe_key)


def _verdict(resp: requests.Response, *keys: str) -> str | None:
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}"
    try:
        answer = resp.json()
    except ValueError:
        return "HTTP 200 without a JSON answer"
    for key in keys:
        if key in answer:
            code = answer[key]
            if code in (0, "0"):
                return None
            message = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
            return f"rejected: {key}={code} {message}"[:200]
    return "HTTP 200 without a verdict"


def _wecom_bot(base: str, timeout: float, rest: str, body: str) -> str | None:
    key = rest.strip("/").split("/")[0].split("?")[0]
    resp = requests.post(f"{base}/cgi-bin/webhook/send", params={"key": key},
                         json={"msgtype": "text", "text": {"content": body}}, timeout=timeout)
    return _verdict(resp, "errcode")


def _dingtalk(base: str, timeout: float, rest: str, title: str, body: str) -> str | None:
    """dingtalk://TOKEN or dingtalk://SECRET@TOKEN (signed robots)."""
    credentials = rest.strip("/").split("/")[0].split("?")[0]
    secret, _, token = credentials.rpartition("@")
    params = {"access_token": token}
    if secret:
        timestamp = str(int(time.time() * 1000))
        digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
        params.update(timestamp=timestamp, sign=base64.b64encode(digest).decode())
    resp = requests.post(f"{base}/robot/send", params=params,
                         json={"msgtype": "text", "text": {"content": f"{title}\n{body}"}}, timeout=timeout)
    return _verdict(resp, "errcode")


def _feishu(base: str, timeout: float, rest: str, body: str) -> str | None:
    token = urllib.parse.quote(rest.strip("/").split("/")[0].split("?")[0])
    resp = requests.post(f"{base}/open-apis/bot/v2/hook/{token}",
                         json={"msg_type": "text", "content": {"text": body}}, timeout=timeout)
    return _verdict(resp, "code", "StatusCode")


def _plain_json_webhook(url: str) -> bool:
    """json://host[:port]/path (jsons:// for HTTPS) without credentials or
    options: the most common channel, sent here; anything else (a user and
    password, Apprise's ?-options, headers) goes through Apprise."""
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme in ("json", "jsons") and bool(parts.hostname) and not parts.query and not parts.fragment
            and "@" not in parts.netloc)


_clients: tuple[int, urllib3.PoolManager | None, requests.Session] | None = None
# As requests would (Apprise's way): redirects followed, no retry of a
# failed connection (the delivery's own backoff retries).
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_redirect=False)


def _http() -> tuple[urllib3.PoolManager | None, requests.Session]:
    """Kept-alive connections, one set per process: Apprise builds an
    Apprise object, a plugin and a thread pool and opens a new connection
    for every message, a third of notify's worker time (py-spy). json://
    (plain HTTP) goes through urllib3 itself, not requests on top of it:
    requests reads the environment's proxies and netrc for every post, 1.6
    ms of CPU a post against 0.9 ms (a local receiver, min of 20 batches).
    jsons:// goes through requests (its CA bundle, REQUESTS_CA_BUNDLE), and
    so does everything when the environment names a proxy (no pool): it
    honours HTTP(S)_PROXY and NO_PROXY, as Apprise did."""
    global _clients
    if _clients is None or _clients[0] != os.getpid():  # a forked child starts its own
        _clients = (os.getpid(), None if urllib.request.getproxies() else urllib3.PoolManager(), requests.Session())
    return _clients[1], _clients[2]


def _json_webhook(url: str, timeout: float, title: str, body: str, dedupe_key: str) -> str | None:
    """What Apprise's json:// sends (version, title, message, attachments,
    type; the dedupe key as the X-Linli-Dedupe-Key header), and the same
    error on failure."""
    parts = urllib.parse.urlsplit(url)
    target = urllib.parse.urlunsplit(("https" if parts.scheme == "jsons" else "http", parts.netloc,
                                      parts.path or "/", "", ""))
    headers = {"User-Agent": "Linli", "Content-Type": "application/json"}
    if dedupe_key:
        # Lets a receiving webhook drop a message it already has (a send
        # repeated after a crash between sending and recording it).
        headers["X-Linli-Dedupe-Key"] = dedupe_key
    payload = json.dumps({"version": "1.0", "title": title, "message": body, "attachments": [], "type": "info"})
    try:
        pool, session = _http()
        if parts.scheme == "json" and pool is not None:
            status = pool.request("POST", target, body=payload, headers=headers, timeout=timeout,
                                  retries=_RETRIES).status
        else:
            status = session.post(target, data=payload, headers=headers, timeout=timeout,
                                  allow_redirects=True).status_code  # as Apprise does
    except (requests.RequestException, urllib3.exceptions.HTTPError):
        return "channel refused or unreachable"
    return None if 200 <= status < 300 else "channel refused or unreachable"


def _apprise(url: str, title: str, body: str, dedupe_key: str) -> str | None:
    if dedupe_key and url.startswith(("json://", "jsons://")):
        # Lets a receiving webhook drop a message it already has (a send
        # repeated after a crash between sending and recording it).
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"+X-Linli-Dedupe-Key": dedupe_key})
    sender = apprise.Apprise()
    if not sender.add(url):
        return "channel URL not understood"
    # Plain text: residents' words must never become live HTML in an email
    # (Apprise escapes text for channels that show HTML).
    if sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT):
        return None
    return "channel refused or unreachable"
