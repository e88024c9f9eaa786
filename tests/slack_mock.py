"""A stand-in for Slack's servers (which cannot be reached from here): a tiny Web API on
loopback that records every call, plus ``response_url`` endpoints, plus a signed-request
helper playing Slack's side of the Events API."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

BOT_USER = "UQABOT"
BOT_ID = "BQABOT"


@dataclass
class Call:
    method: str  # "chat.postMessage", ... or "response_url"
    path: str
    body: dict[str, Any]
    authorization: str | None


@dataclass
class SlackMock:
    """Records calls; ``failures[(method, channel or "*")] = "not_in_channel"`` makes calls fail."""

    calls: list[Call] = field(default_factory=list)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    socket_url: str | None = None  # what apps.connections.open hands out
    # Threads as conversations.replies returns them: (channel, thread ts) → messages. The
    # bot's threaded replies are added as they are posted; tests add what people said.
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    _ts: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def record(self, call: Call) -> dict[str, Any]:
        with self.lock:
            self.calls.append(call)
            n = next(self._ts)
        if call.method == "response_url":
            return {}
        error = self.failures.get((call.method, str(call.body.get("channel")))) or self.failures.get(
            (call.method, "*"))
        if error:
            return {"ok": False, "error": error}
        if call.method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        if call.method == "conversations.replies":
            with self.lock:
                messages = list(self.threads.get((str(call.body.get("channel")),
                                                  str(call.body.get("ts"))), []))
            if not messages:
                return {"ok": False, "error": "thread_not_found"}
            return {"ok": True, "messages": sorted(messages, key=lambda m: float(m["ts"])),
                    "has_more": False}
        if call.method == "chat.postMessage" and call.body.get("thread_ts"):
            with self.lock:
                self.threads.setdefault((str(call.body["channel"]), str(call.body["thread_ts"])),
                                        []).append({"type": "message", "bot_id": BOT_ID,
                                                    "user": BOT_USER, "ts": f"1800000000.{n:06d}",
                                                    "text": call.body.get("text") or ""})
        if call.method == "auth.test":
            return {"ok": True, "url": "https://qa-test.slack.com/", "team": "QA test",
                    "user": "qa", "team_id": "T0QA", "user_id": BOT_USER, "bot_id": BOT_ID}
        return {"ok": True, "channel": call.body.get("channel"), "ts": f"1800000000.{n:06d}",
                "message": call.body}

    def said(self, channel: str, ts: str, text: str, thread_ts: str | None = None,
             user: str = "UASKER") -> dict[str, Any]:
        """A person's message, added to its thread's history; returns it as an event."""
        message = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                   "channel_type": "channel", **({"thread_ts": thread_ts} if thread_ts else {})}
        with self.lock:
            self.threads.setdefault((channel, thread_ts or ts), []).append(message)
        return message

    def find(self, method: str | None = None, **match: Any) -> list[Call]:
        with self.lock:
            calls = list(self.calls)
        return [
            c for c in calls
            if (method is None or c.method == method)
            and all(c.body.get(k) == v for k, v in match.items() if k != "path")
            and ("path" not in match or c.path == match["path"])
        ]

    def wait_for(self, method: str, timeout: float = 30.0, count: int = 1, **match: Any) -> list[Call]:
        """Poll until ``count`` matching calls arrived; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(method, **match)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"no {method} {match} within {timeout}s; calls: {[(c.method, c.body) for c in self.calls]}"
        )

    def start(self) -> SlackMock:
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                kind = self.headers.get("Content-Type") or ""
                if "json" in kind:
                    body = json.loads(raw or "{}")
                else:
                    body = dict(parse_qsl(raw))
                if self.path.startswith("/api/"):
                    method = self.path[len("/api/"):].split("?")[0]
                elif self.path.startswith("/response/"):
                    method = "response_url"
                else:
                    self.send_error(404)
                    return
                reply = mock.record(Call(method, self.path, body, self.headers.get("Authorization")))
                data = b"ok" if method == "response_url" else json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain" if method == "response_url"
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with a request: ``v0=`` HMAC-SHA256 of ``v0:timestamp:body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_body(event: dict[str, Any], event_id: str) -> str:
    return json.dumps({
        "token": "legacy-verification-token",
        "team_id": "T0QA",
        "api_app_id": "A0QA",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": "T0QA", "user_id": BOT_USER, "is_bot": True}],
    })


class SocketModeServer:
    """Slack's Socket Mode side: a minimal WebSocket server (RFC 6455, unfragmented frames)
    that greets with ``hello``, sends event envelopes and records the client's acks."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections: list[Any] = []
        self.acks: list[str] = []
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        import base64

        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        headers = dict(
            line.split(": ", 1) for line in request.decode().split("\r\n")[1:] if ": " in line
        )
        key = {k.lower(): v for k, v in headers.items()}["sec-websocket-key"]
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        conn.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self._send(conn, 0x1, json.dumps({"type": "hello", "num_connections": 1,
                                          "connection_info": {"app_id": "A0QA"}}).encode())
        with self.lock:
            self.connections.append(conn)
        try:
            while True:
                opcode, payload = self._read(conn)
                if opcode == 0x8:
                    return
                if opcode == 0x9:
                    self._send(conn, 0xA, payload)
                elif opcode == 0x1:
                    message = json.loads(payload)
                    with self.lock:
                        self.acks.append(message.get("envelope_id"))
        except (OSError, ConnectionError):
            return

    @staticmethod
    def _exactly(conn: Any, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read(self, conn: Any) -> tuple[int, bytes]:
        first, second = self._exactly(conn, 2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._exactly(conn, 2), "big")
        elif length == 127:
            length = int.from_bytes(self._exactly(conn, 8), "big")
        mask = self._exactly(conn, 4) if second & 0x80 else b"\0\0\0\0"
        data = self._exactly(conn, length)
        return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _send(self, conn: Any, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, n])
        elif n < 1 << 16:
            header = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        with self.send_lock:
            conn.sendall(header + payload)

    def send_event(self, body: str, envelope_id: str) -> None:
        """Deliver an Events API body (as ``event_body`` makes) to the connected client."""
        envelope = {"envelope_id": envelope_id, "type": "events_api",
                    "accept_response_payload": False, "retry_attempt": 0, "retry_reason": "",
                    "payload": json.loads(body)}
        with self.lock:
            conn = self.connections[-1]
        self._send(conn, 0x1, json.dumps(envelope).encode())

    def stop(self) -> None:
        self.listener.close()
        with self.lock:
            for conn in self.connections:
                try:
                    conn.close()
                except OSError:
                    pass
