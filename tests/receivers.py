"""Real local servers that stand in for the outside world in tests: an
HTTP webhook receiver (JSON webhooks, SMS gateways, bots), an SMTP server
(aiosmtpd), and imitations of Alibaba Cloud's and Tencent Cloud's SMS and
voice APIs that verify signatures as the providers do. All listen on
127.0.0.1 and record what they get."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote_plus

from aiosmtpd.controller import Controller

# How often a serving thread looks for its stop signal: shutdown() waits up
# to this long (the default half second, paid by every test that serves).
POLL = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WebhookReceiver:
    """Records every POST (path, query, headers, parsed JSON or raw text).
    `status`, `answer` and `delay` set how it replies — to imitate a
    failing channel, a bot that says 200 but rejects, or one that hangs;
    `routes` sets them per path prefix."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        self.answer: dict = {"ok": True}
        self.delay = 0.0
        self.routes: dict[str, tuple[int, dict, float]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = body.decode("utf-8", "replace")
                path, _, query = self.path.partition("?")
                status, answer, delay = next(
                    (r for prefix, r in receiver.routes.items() if path.startswith(prefix)),
                    (receiver.status, receiver.answer, receiver.delay))
                receiver.received.append({"path": path, "query": parse_qs(query), "body": payload,
                                          "headers": dict(self.headers), "status": status, "at": time.time()})
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps(answer).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(POLL,), daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) keeping each message parsed."""

    def __init__(self):
        self.messages = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=linli@example.org&to={to}"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


class _GatewayReceiver:
    """A local imitation of a cloud SMS/voice API: it checks the request's
    signature the way the provider does, from the shared secret (a wrong one
    gets the provider's own error), answers with `code` (or, for a
    transient failure, `status`), and records what it took."""

    def __init__(self, key_id: str, secret: str):
        self.secrets = {key_id: secret}
        self.received: list[dict] = []
        self.rejected: list[dict] = []
        self.code = self.OK
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = receiver.handle(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer, ensure_ascii=False).encode())

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(POLL,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class AliyunReceiver(_GatewayReceiver):
    """Alibaba Cloud's RPC API (Dysmsapi SendSms, Dyvmsapi SingleCallByTts):
    form-encoded POST, signature v1 (HMAC-SHA1 over the sorted, percent-
    encoded parameters, keyed with secret + "&"), `Code` "OK" or the error
    code; a wrong signature is HTTP 400 `SignatureDoesNotMatch`."""

    OK = "OK"
    ACTIONS = {"SendSms": ("PhoneNumbers", "SignName", "TemplateCode", "TemplateParam"),
               "SingleCallByTts": ("CalledNumber", "TtsCode")}

    @staticmethod
    def encode(value: str) -> str:
        # As Alibaba's documentation states it: Java's URLEncoder, then
        # + → %20, * → %2A, %7E → ~.
        return quote_plus(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

    def expected_signature(self, params: dict, secret: str) -> str:
        pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
        canonical = "&".join(f"{self.encode(k)}={self.encode(v)}" for k, v in pairs)
        to_sign = "POST&%2F&" + self.encode(canonical)
        return base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()

    def handle(self, path, headers, body):
        params = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        request_id = str(uuid.uuid4()).upper()
        secret = self.secrets.get(params.get("AccessKeyId", ""))
        if secret is None:
            self.rejected.append(params)
            return 404, {"RequestId": request_id, "Code": "InvalidAccessKeyId.NotFound",
                         "Message": "Specified access key is not found."}
        if (params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0"
                or not params.get("SignatureNonce") or not params.get("Timestamp")
                or not hmac.compare_digest(params.get("Signature", ""), self.expected_signature(params, secret))):
            self.rejected.append(params)
            return 400, {"RequestId": request_id, "HostId": "dysmsapi.aliyuncs.com", "Code": "SignatureDoesNotMatch",
                         "Message": "Specified signature does not match our calculation."}
        missing = [f for f in self.ACTIONS.get(params.get("Action"), ("Action",)) if not params.get(f)]
        if missing or params.get("Version") != "2017-05-25":
            return 400, {"RequestId": request_id, "Code": "MissingParameter", "Message": f"missing {missing}"}
        for field in ("TemplateParam", "TtsParam"):
            if field in params:
                params[field] = json.loads(params[field])
        self.received.append(params)
        if self.status >= 500:
            return self.status, {"RequestId": request_id, "Code": "ServiceUnavailable",
                                 "Message": "The request has failed due to a temporary failure of the server."}
        return 200, {"RequestId": request_id, "Code": self.code, "Message": "OK" if self.code == "OK" else self.code,
                     **({"BizId": "900619746936498440^0"} if params["Action"] == "SendSms" else {"CallId": "1"})}


class TencentReceiver(_GatewayReceiver):
    """Tencent Cloud SMS (sms SendSms, 2021-01-11) and voice notification
    (vms SendTtsVoice, 2020-09-02): JSON POST signed with TC3-HMAC-SHA256
    (canonical request → string to sign → key derived from "TC3" + secret,
    date, service, "tc3_request"), the credential scope naming the action's
    service; a wrong signature gets `AuthFailure.SignatureFailure`. SMS
    answers per number (`SendStatusSet[].Code` "Ok" or the error, `code`),
    voice with a `SendStatus.CallId`; either can answer a request-level
    `error`."""

    OK = "Ok"
    # Action → (service in the credential scope, API version, required fields).
    ACTIONS = {"SendSms": ("sms", "2021-01-11", ("PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId")),
               "SendTtsVoice": ("vms", "2020-09-02", ("CalledNumber", "VoiceSdkAppid", "TemplateId"))}

    def __init__(self, key_id: str, secret: str):
        super().__init__(key_id, secret)
        self.error: str | None = None  # a request-level error code, e.g. InternalError

    @staticmethod
    def _hmac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    def expected_signature(self, headers: dict, body: bytes, secret: str, date: str, signed: list[str],
                           timestamp: str, service: str) -> str:
        lowered = {k.lower(): v for k, v in headers.items()}
        canonical_headers = "".join(f"{name}:{lowered.get(name, '').strip().lower()}\n" for name in signed)
        canonical = "\n".join(["POST", "/", "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()])
        to_sign = "\n".join(["TC3-HMAC-SHA256", timestamp, f"{date}/{service}/tc3_request",
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = self._hmac(self._hmac(self._hmac(("TC3" + secret).encode(), date), service), "tc3_request")
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()

    def handle(self, path, headers, body):
        request_id = str(uuid.uuid4())

        def error(code, message):
            return 200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}

        match = re.match(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/(\w+)/tc3_request, "
                         r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$", headers.get("Authorization", ""))
        if not match:
            return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        key_id, date, service, signed, signature = match.groups()
        secret = self.secrets.get(key_id)
        if secret is None:
            return error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        timestamp = headers.get("X-TC-Timestamp", "")
        signed_list = signed.split(";")
        action = self.ACTIONS.get(headers.get("X-TC-Action", ""))
        if ("host" not in signed_list or "content-type" not in signed_list or not action or service != action[0]
                or not timestamp.isdigit()
                or time.strftime("%Y-%m-%d", time.gmtime(int(timestamp))) != date
                or not hmac.compare_digest(signature, self.expected_signature(
                    headers, body, secret, date, signed_list, timestamp, service))):
            self.rejected.append({"headers": headers})
            return error("AuthFailure.SignatureFailure",
                         "The provided credentials could not be validated. Please check your signature is correct.")
        payload = json.loads(body)
        if headers.get("X-TC-Version") != action[1]:
            return error("InvalidAction", "The action is not supported.")
        missing = [name for name in action[2] if not payload.get(name)]
        if missing:
            return error("MissingParameter", f"missing {missing}")
        self.received.append(payload)
        if self.status >= 500:
            return self.status, {}
        if self.error:
            return error(self.error, self.error)
        if service == "vms":
            return 200, {"Response": {"SendStatus": {"CallId": str(uuid.uuid4()), "SessionContext": ""},
                                      "RequestId": request_id}}
        return 200, {"Response": {"SendStatusSet": [
            {"SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": phone, "Fee": 1, "SessionContext": "",
             "Code": self.code, "Message": "send success" if self.code == "Ok" else self.code, "IsoCode": "CN"}
            for phone in payload.get("PhoneNumberSet", [])], "RequestId": request_id}}
