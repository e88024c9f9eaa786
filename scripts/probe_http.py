"""Hostile HTTP input against a real `qa serve`: what it answers, probe by probe.

    HF_HUB_OFFLINE=1 python scripts/probe_http.py
    HF_HUB_OFFLINE=1 python scripts/probe_http.py --examples 300 --slow 200 --hold 60

The server runs as a user starts it (`python -m cli serve --port 0`) over the seeds, indexed
with the real model in a temporary folder. The probes: schemathesis over the served OpenAPI
schema (valid and invalid requests of every operation), malformed JSON, wrong content types,
a 1 MB question, out-of-range and mistyped k, control and bidirectional characters (and a
lone surrogate), path traversal on GET /show, and --slow connections that send their
headers or body a byte at a time and are held open for --hold seconds while GET /health and
POST /ask must still answer. Prints one row per probe; exits 1 if any got a 5xx or an answer
other than the expected one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TAJI = "How many rockets landed at the Taji base?"


def start_server(folder: Path, index: Path, docs: Path) -> tuple[subprocess.Popen, str]:
    log = folder / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1")
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", "0", "--docs", str(docs),
             "--index", str(index)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 900  # the first run builds the index with the real model
    while not (found := re.search(r"API at (http://\S+) ", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"qa serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return process, found.group(1)


class Probes:
    def __init__(self, base: str):
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=60)
        self.rows: list[tuple[str, str, str, bool]] = []

    def row(self, name: str, got: str, expected: str, ok: bool) -> None:
        self.rows.append((name, got, expected, ok))
        line = f"{'ok ' if ok else 'BAD'} {name}: {got} (expected {expected})"
        print(line.encode("utf-8", "backslashreplace").decode("utf-8"), flush=True)

    def get(self, name: str, statuses: set[int], path: str, check: Any = None,
            **kwargs: Any) -> None:
        try:
            response = self.client.get(path, **kwargs)
        except httpx.HTTPError as error:
            self.row(name, f"{type(error).__name__}: {error}", "an answer", False)
            return
        self.expect(name, response, statuses, check)

    def expect(self, name: str, response: httpx.Response, statuses: set[int],
               check: Any = None) -> None:
        ok = response.status_code in statuses and (check is None or check(response))
        body = response.text[:160].replace("\n", " ")
        self.row(name, f"{response.status_code} {body}",
                 "/".join(str(s) for s in sorted(statuses)), ok)

    def ask(self, name: str, body: Any, statuses: set[int], check: Any = None,
            **kwargs: Any) -> None:
        if isinstance(body, dict):
            kwargs["json"] = body
        else:  # bytes as they are, or an iterator of them (sent chunked)
            kwargs.setdefault("headers", {"Content-Type": "application/json"})
            kwargs["content"] = body
        try:
            response = self.client.post("/ask", **kwargs)
        except httpx.HTTPError as error:
            self.row(name, f"{type(error).__name__}: {error}", "an answer", False)
            return
        self.expect(name, response, statuses, check)


def raw(base: str, request: bytes, read: int = 65536) -> bytes:
    """Send ``request`` bytes as they are (no client normalises the path) and read the
    answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        out = b""
        while len(out) < read:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"content-length:" in out.lower():
                head, _, body = out.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                if len(body) >= length:
                    break
        return out


def schemathesis_run(p: Probes, examples: int) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{p.base}/openapi.json")
    for operation in [result.ok() for result in schema.get_all_operations()]:
        for mode in [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]:
            if operation.method.lower() == "get" and mode is schemathesis.GenerationMode.NEGATIVE \
                    and not operation.query and not operation.path_parameters:
                continue  # nothing to get wrong
            statuses, failures = fuzz(p.base, operation, mode, examples)
            got = ", ".join(f"{n}×{s}" for s, n in sorted(statuses.items()))
            if failures:
                got += f"; {len(failures)} check failures, first: {failures[0]}"
            p.row(f"schemathesis {mode.value} {operation.method.upper()} {operation.path}",
                  got, "no 5xx, every response as the schema says",
                  not failures and not any(s >= 500 for s in statuses))


def fuzz(base: str, operation: Any, mode: Any, examples: int
         ) -> tuple[dict[int, int], list[str]]:
    """Requests hypothesis generates for one operation: their statuses, failed checks."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import positive_data_acceptance

    statuses: dict[int, int] = {}
    failures: list[str] = []

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=base)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            # Schema-valid dates can still be refused (2021-02-30, since after until): the
            # schema cannot say that.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except (Exception, BaseExceptionGroup) as error:  # failed checks: report, go on
            failures.append(f"{type(error).__name__}: {str(error)[:200]}")

    run()
    return statuses, failures


def bad_json(p: Probes) -> None:
    for name, body in [
        ("malformed JSON {not json", b"{not json"),
        ("malformed JSON: empty body", b""),
        ("malformed JSON: cut short", b'{"question": "Taji'),
        ("malformed JSON: not UTF-8", b'{"question": "\xff\xfe"}'),
        ("malformed JSON: null", b"null"),
        ("malformed JSON: a list", b'["question"]'),
        ("malformed JSON: NaN", b'{"question": "Taji", "k": NaN}'),
        ("malformed JSON: 1e999 for k", b'{"question": "Taji", "k": 1e999}'),
        ("malformed JSON: 30,000 nested lists", b"[" * 30000 + b"]" * 30000),
        ("malformed JSON: 30,000 nested objects", b'{"a":' * 30000 + b"1" + b"}" * 30000),
        ("malformed JSON: duplicate keys", b'{"question": "", "question": "' +
         TAJI.encode() + b'"}'),
    ]:
        p.ask(name, body, {200, 400, 413, 422})


def content_types(p: Probes) -> None:
    body = json.dumps({"question": TAJI, "k": 1}).encode()
    for kind, statuses in [
        (None, {415}), ("text/plain", {415}), ("application/x-www-form-urlencoded", {415}),
        ("multipart/form-data; boundary=x", {415}), ("application/xml", {415}),
        ("application/jsonx", {415}), ("APPLICATION/JSON", {200}),
        ("application/json; charset=utf-8", {200}), ("application/merge-patch+json", {200, 415}),
    ]:
        headers = {"Content-Type": kind} if kind else {}
        response = p.client.post("/ask", content=body, headers=headers)
        p.expect(f"content type {kind or '(none)'}", response, statuses)


def big_questions(p: Probes) -> None:
    p.ask("a 1 MB question", {"question": "rockets " * 131072}, {413})
    p.ask("a 1 MB question, no Content-Length (chunked)",
          iter([json.dumps({"question": "rockets " * 131072}).encode()]), {413})
    p.ask("a 60 kB question (under the 64 kB limit)", {"question": "rockets Taji " * 4600},
          {200}, lambda r: "longer than the model reads" in r.headers.get("X-QA-Warning", ""))
    answer = raw(p.base, b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 200000000\r\n\r\n", read=4096)
    status = answer.split(b" ", 2)[1].decode() if answer else "no answer"
    p.row("Content-Length 200 MB announced, nothing sent", status, "413", status == "413")


def ks(p: Probes) -> None:
    for k in [-1, 0, 10**9, 10**30, "abc", "5", 1.5, None, True, [], {}]:
        p.ask(f"k = {json.dumps(k)}", {"question": TAJI, "k": k},
              {200, 422} if k == "5" else {422},
              lambda r: r.status_code == 200 or "k" in r.json()["error"])


def controls(p: Probes) -> None:
    def one_line_or_answer(r: httpx.Response) -> bool:
        return r.status_code != 200 or "passages" in r.json()

    for name, question in [
        ("NUL bytes", "\x00\x00 rockets \x00 Taji"), ("only NUL bytes", "\x00\x00\x00"),
        ("terminal escapes", "\x1b[2J\x1b]0;PWNED\x07How many rockets landed at Taji?"),
        ("bidi overrides", "\u202eesab ijaT\u202c How many rockets \u2066landed\u2069?"),
        ("zero-width and BOM", "\ufeff\u200bHow\u200d many rockets landed at Taji?"),
        ("C1 controls", "\x85\x9b How many rockets landed at Taji?"),
        ("lone surrogate", "\ud800 How many rockets landed at Taji?"),
    ]:
        body = json.dumps({"question": question, "k": 2}).encode()  # \\u escapes, as sent
        p.ask(f"control characters: {name}", body, {200, 400}, one_line_or_answer)
    body = json.dumps({"question": TAJI, "source": "\ud800\x00\u202e"}).encode()
    p.ask("control characters in the source filter", body, {200, 400, 422})
    odd = "\ud800\x00\u202e\x1b"
    for path, fields in [
        ("/ask", {"question": TAJI, "since": odd, "until": odd, "as_of": odd}),
        ("/feedback", {"question": odd, "verdict": "up", "source": odd, "as_of": odd}),
        ("/feedback", {"question": TAJI, "verdict": odd}),
        ("/watches", {"question": odd, "webhook": "http://x/" + odd, "source": odd}),
    ]:
        for name, value in fields.items():
            body = dict(fields) if path != "/ask" else {"question": TAJI, name: value}
            try:
                response = p.client.post(path, content=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            except httpx.HTTPError as error:
                p.row(f"lone surrogate in {path} {name}", type(error).__name__, "an answer",
                      False)
                continue
            p.expect(f"lone surrogate and controls in {path} {name}", response,
                     {200, 201, 400, 404, 422})
            if path != "/ask":
                break  # all fields at once
    p.get("search page: controls in q", {200, 400}, "/",
          params={"q": "\x1b[2J\u202e rockets \x00"})
    answer = raw(p.base, b"GET /?q=rockets%ED%A0%80%FF%00&source=%ED%A0%80 HTTP/1.1\r\n"
                 b"Host: x\r\nConnection: close\r\n\r\n")  # a surrogate and 0xFF, as bytes
    status = answer.split(b" ", 2)[1].decode() if answer else "no answer"
    p.row("search page: q and source not UTF-8", status, "200/400", status in ("200", "400"))
    p.get("search page: k=abc", {200, 400}, "/", params={"q": "rockets", "k": "abc"})
    p.get("search page: k=-1, NUL in since", {200, 400}, "/",
          params={"q": "rockets", "k": "-1", "since": "\x00"})


def traversal(p: Probes) -> None:
    def no_file(r: httpx.Response) -> bool:
        return "root:" not in r.text and "[extensions]" not in r.text

    for source in ["../../../../../../etc/passwd", "/etc/passwd", "..%2f..%2f..%2fetc%2fpasswd",
                   "000_3462dbd106702807/../../../../etc/passwd", "..\\..\\..\\windows\\win.ini",
                   "%00", "\x00", "a" * 10000, "file:///etc/passwd", "~root/.bashrc"]:
        p.get(f"GET /show source={source[:40]!r}", {400, 404, 422}, "/show", no_file,
              params={"source": source, "span": "0:99"})
    for span in ["-5:10", "99999999999999999999:1", "a:b", "10:5", ":", "0:" + "9" * 400]:
        p.get(f"GET /show span={span[:30]!r}", {200, 400, 422}, "/show",
              params={"source": "003_a6f98cea0e1f5c95", "span": span})
    for path in [b"/show/../../../../etc/passwd", b"/../../../../etc/passwd",
                 b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd", b"/static/../../../etc/passwd",
                 b"/docs/../../../../etc/passwd", b"/show?source=../../../../etc/passwd%00"]:
        answer = raw(p.base, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = answer.split(b" ", 2)[1].decode() if answer else "no answer"
        ok = status in ("400", "404", "422") and b"root:" not in answer
        p.row(f"raw GET {path.decode()}", status, "400/404/422, no file", ok)


def slow_connections(p: Probes, count: int, hold: float) -> None:
    """``count`` connections that never finish their request: half send headers a byte now
    and then (slowloris), half announce a body and send it a byte at a time. Meanwhile
    /health every 0.5 s and /ask every 5 s."""
    host, port = p.base.removeprefix("http://").split(":")
    sockets: list[socket.socket] = []
    for i in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        if i % 2:
            sock.sendall(b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{")
        else:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    closed: set[int] = set()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(5):
            for i, sock in enumerate(sockets):
                if i in closed:
                    continue
                try:
                    sock.sendall(b" " if i % 2 else b"X-Slow: 1\r\n")
                except OSError:
                    closed.add(i)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    health: list[float] = []
    asks: list[float] = []
    failures: list[str] = []
    start = time.monotonic()
    with httpx.Client(base_url=p.base, timeout=30) as client:
        while time.monotonic() - start < hold:
            began = time.monotonic()
            try:
                response = client.get("/health")
                if response.status_code != 200:
                    failures.append(f"/health {response.status_code}")
                health.append(time.monotonic() - began)
                if len(health) % 10 == 1:
                    began = time.monotonic()
                    response = client.post("/ask", json={"question": TAJI, "k": 1})
                    if response.status_code != 200:
                        failures.append(f"/ask {response.status_code}")
                    asks.append(time.monotonic() - began)
            except httpx.HTTPError as error:
                failures.append(f"{type(error).__name__}")
            time.sleep(0.5)
    stop.set()
    thread.join()
    for sock in sockets:
        sock.close()
    health.sort()
    got = (f"{len(health)} /health, slowest {health[-1] * 1000:.0f} ms (median "
           f"{health[len(health) // 2] * 1000:.0f} ms); {len(asks)} /ask, slowest "
           f"{max(asks):.2f} s; closed by the server: {sum(1 for i in closed if not i % 2)} "
           f"of {(count + 1) // 2} trickling headers, {sum(1 for i in closed if i % 2)} of "
           f"{count // 2} trickling bodies; failures: {failures[:3] or 'none'}")
    p.row(f"{count} slow connections held {hold:.0f} s", got,
          "/health and /ask answer throughout", not failures and health[-1] < 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200,
                        help="schemathesis examples per operation and mode (0: none)")
    parser.add_argument("--slow", type=int, default=200, help="slow connections")
    parser.add_argument("--hold", type=float, default=60, help="seconds they are held")
    parser.add_argument("--index", type=Path, help="an index of the seeds to serve (else built)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="probe-http-"))
    docs = folder / "docs"
    shutil.copytree(ROOT / "seeds", docs)
    process, base = start_server(folder, args.index or folder / "index", docs)
    print(f"qa serve at {base}", flush=True)
    probes = Probes(base)
    try:
        if args.examples:
            schemathesis_run(probes, args.examples)
        bad_json(probes)
        content_types(probes)
        big_questions(probes)
        ks(probes)
        controls(probes)
        traversal(probes)
        slow_connections(probes, args.slow, args.hold)
        probes.get("GET /health after the probes", {200}, "/health",
                   lambda r: r.json()["status"] == "ok")
    finally:
        probes.client.close()
        process.terminate()
        process.wait(30)
        log = (folder / "serve.log").read_text()
        errors = [line for line in log.splitlines() if "Traceback" in line or " 500 " in line]
        print(f"server log: {len(log.splitlines())} lines, {len(errors)} tracebacks or 500s")
        if errors:
            print(f"kept {folder / 'serve.log'}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    bad = [row for row in probes.rows if not row[3]]
    print(f"\n{len(probes.rows)} probes, {len(bad)} unexpected")
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
