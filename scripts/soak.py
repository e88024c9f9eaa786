"""Soak test: `qa serve` and `qa slack --http` answer continuously while the archive is updated.

Both servers run over one index (real model) while client threads ask questions without
pause, and `qa index update` runs N times, each adding one new article and removing an older
added one. After each update the script asks (over HTTP and as Slack mentions) about the new
article until it is cited, and checks the removed one no longer is. It prints, per update, how
long the change took to be seen, the servers' resident memory, and at the end the request
counts; it exits 1 if any request failed, any update was not seen within --visible seconds, or
memory grew by more than --growth MB.

    HF_HUB_OFFLINE=1 python scripts/soak.py --updates 20

Slack's servers cannot be reached here: the bot talks to the local mock of the Web API from
tests/slack_mock.py, and the script signs its events as Slack would.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from slack_mock import BOT_USER, SlackMock, event_body, sign  # noqa: E402

SECRET = "soak-signing-secret"
TOKEN = "xoxb-soak-token"
QUESTIONS = [
    "How many rockets landed at the Taji base?",
    "Who is McKenzie?",
    "What is the Quds Force?",
    "What did Khamenei say?",
    "Who carried out the attack?",
]
ARTICLE = (
    "{town} Harbour Reopens\n\nMarch {day}, 2021\n\nThe harbour of {town} reopened to fishing "
    "boats on Monday after a storm closed it for {weeks} weeks, the port office of {town} "
    "said. Repairs to the {town} breakwater cost {cost} million dollars.\n"
)
TOWNS = ["Avalon", "Brixham", "Cullen", "Dunmore", "Eyemouth", "Fowey", "Girvan", "Hayle",
         "Ilfracombe", "Johnshaven", "Kilkeel", "Lerwick", "Mallaig", "Newlyn", "Oban",
         "Padstow", "Queensferry", "Rosslare", "Stonehaven", "Tobermory", "Ullapool", "Wick"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(args: list[str], env: dict[str, str], log: Path, pattern: str) -> tuple[Any, str]:
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err)
    deadline = time.monotonic() + 300
    while not (found := re.search(pattern, log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{args[0]} did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, found.group(1)


class Load:
    """Client threads asking without pause; counts outcomes."""

    def __init__(self, api: str, bot: str, clients: int):
        self.api, self.bot, self.clients = api, bot, clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []
        self.ids = itertools.count()

    def count(self, key: str, failure: str | None = None) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if failure:
                self.failures.append(failure)

    def ask_api(self) -> None:
        with httpx.Client(base_url=self.api, timeout=60) as client:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                try:
                    r = client.post("/ask", json={"question": QUESTIONS[n % len(QUESTIONS)]})
                    ok = r.status_code == 200 and r.json()["passages"]
                    self.count("api ok" if ok else "api failed",
                               None if ok else f"/ask {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as error:
                    self.count("api failed", f"/ask {error!r}")

    def ask_bot(self) -> None:
        with httpx.Client(timeout=60) as client:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                status = mention(client, self.bot, QUESTIONS[n % len(QUESTIONS)],
                                 f"CLOAD{next(self.ids)}")
                ok = status == 200
                self.count("slack ok" if ok else "slack failed",
                           None if ok else f"slack event {status}")
                time.sleep(0.2)  # people type slower than HTTP clients

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.ask_api, daemon=True)
                   for _ in range(self.clients)]
        threads.append(threading.Thread(target=self.ask_bot, daemon=True))
        for thread in threads:
            thread.start()
        return threads


_events = itertools.count()


def mention(client: httpx.Client, bot: str, question: str, channel: str) -> int:
    n = next(_events)
    ts = f"1800000000.{n:06d}"
    event = {"type": "app_mention", "user": "USOAK", "text": f"<@{BOT_USER}> {question}",
             "ts": ts, "channel": channel, "event_ts": ts}
    body = event_body(event, f"EvSOAK{n}")
    headers = {"Content-Type": "application/json", **sign(SECRET, body)}
    try:
        return client.post(f"{bot}/slack/events", content=body, headers=headers).status_code
    except httpx.HTTPError:
        return 0


def update(docs: Path, index: Path, env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cli", "index", "update", "--docs", str(docs),
                           "--index", str(index)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"qa index update failed:\n{done.stderr}")
    return time.monotonic() - began


def seen_by_api(api: str, town: str, present: bool, seconds: float) -> float | None:
    """Seconds until /ask cites (or no longer cites) the article about ``town``."""
    began = time.monotonic()
    question = f"When did the harbour of {town} reopen after the storm?"
    with httpx.Client(base_url=api, timeout=60) as client:
        while time.monotonic() - began < seconds:
            data = client.post("/ask", json={"question": question, "k": 5,
                                             "show_weak": True}).json()
            cited = any(p["citation"]["source"] == town.lower() for p in data["passages"])
            if cited == present:
                return time.monotonic() - began
            time.sleep(0.1)
    return None


def seen_by_bot(bot: str, mock: SlackMock, town: str, seconds: float) -> float | None:
    began = time.monotonic()
    with httpx.Client(timeout=60) as client:
        while time.monotonic() - began < seconds:
            channel = f"CSEE{next(_events)}"
            mention(client, bot, f"When did the harbour of {town} reopen after the storm?",
                    channel)
            try:
                (reply,) = mock.wait_for("chat.postMessage", channel=channel, timeout=30)
            except (AssertionError, TimeoutError, ValueError):
                continue
            if f"`{town.lower()}`" in json.dumps(reply.body.get("blocks")):
                return time.monotonic() - began
            time.sleep(0.2)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--clients", type=int, default=3, help="HTTP clients asking nonstop")
    parser.add_argument("--visible", type=float, default=15.0,
                        help="seconds an update may take to be seen")
    parser.add_argument("--growth", type=float, default=150.0,
                        help="MB of resident memory growth tolerated per server")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()
    if args.updates > len(TOWNS):
        parser.error(f"--updates at most {len(TOWNS)}")

    work = args.work or Path(tempfile.mkdtemp(prefix="qa-soak-"))
    docs, index = work / "docs", work / "index"
    shutil.rmtree(docs, ignore_errors=True)
    shutil.copytree(ROOT / "seeds", docs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QA_", "SLACK_"))}
    env.update(HF_HUB_OFFLINE="1", QA_HOME=str(work / "home"))
    print(f"work folder {work}; building the index", flush=True)
    update(docs, index, env)

    mock = SlackMock().start()
    slack_env = {**env, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
                 "SLACK_API_URL": mock.api_url}
    serve, api = start(["serve", "--port", "0", "--docs", str(docs), "--index", str(index)],
                       env, work / "serve.log", r"API at (http://\S+) ")
    bot_process, bot = start(["slack", "--http", "--port", "0", "--docs", str(docs), "--index",
                              str(index)], slack_env, work / "slack.log",
                             r"listening at (http://\S+)/slack/events")
    load = Load(api, bot, args.clients)
    threads = load.run()
    memory = {"serve": [rss_mb(serve.pid)], "slack": [rss_mb(bot_process.pid)]}
    late: list[str] = []
    print(f"{'update':>6} {'took s':>7} {'api sees s':>10} {'gone s':>7} {'slack sees s':>12} "
          f"{'serve MB':>9} {'slack MB':>9}", flush=True)
    try:
        for n in range(args.updates):
            town = TOWNS[n]
            (docs / f"{town.lower()}.txt").write_text(ARTICLE.format(
                town=town, day=n + 1, weeks=n + 2, cost=n + 3))
            removed = TOWNS[n - 2] if n >= 2 else None
            if removed:
                (docs / f"{removed.lower()}.txt").unlink()
            took = update(docs, index, env)
            api_seen = seen_by_api(api, town, True, args.visible)
            gone = seen_by_api(api, removed, False, args.visible) if removed else 0.0
            bot_seen = seen_by_bot(bot, mock, town, args.visible)
            for what, value in (("api", api_seen), ("removal", gone), ("slack", bot_seen)):
                if value is None:
                    late.append(f"update {n + 1}: {what} not seen within {args.visible:g} s")
            memory["serve"].append(rss_mb(serve.pid))
            memory["slack"].append(rss_mb(bot_process.pid))

            def shown(value: float | None) -> str:
                return "late" if value is None else f"{value:.1f}"

            print(f"{n + 1:>6} {took:>7.1f} {shown(api_seen):>10} {shown(gone):>7} "
                  f"{shown(bot_seen):>12} {memory['serve'][-1]:>9.0f} "
                  f"{memory['slack'][-1]:>9.0f}", flush=True)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(60)
        # Every mention the load sent must be answered in its thread, with findings.
        asked = load.counts.get("slack ok", 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = [c for c in mock.find("chat.postMessage")
                       if str(c.body.get("channel", "")).startswith("CLOAD")]
            if len(replies) >= asked:
                break
            time.sleep(0.2)
        unanswered = asked - len(replies)
        wrong = [c for c in replies if "Top findings" not in str(c.body.get("text"))]
        if unanswered:
            load.failures.append(f"{unanswered} Slack mentions got no reply")
        load.failures += [f"Slack reply without findings: {str(c.body.get('text'))[:200]}"
                          for c in wrong[:5]]
        load.counts["slack replies"] = len(replies)
        for process in (serve, bot_process):
            process.terminate()
            process.wait(20)
        mock.stop()
    health_failures = [line for line in (work / "serve.log").read_text().splitlines()
                       if " ERROR " in line]
    print(f"\nrequests: {json.dumps(load.counts, sort_keys=True)}")
    for name, values in memory.items():
        print(f"{name} resident memory MB: start {values[0]:.0f}, after the first update "
              f"{values[1]:.0f}, end {values[-1]:.0f}, max {max(values):.0f}")
    growth = {name: values[-1] - values[1] for name, values in memory.items()}
    problems = load.failures[:10] + late + health_failures[:10]
    problems += [f"{name} memory grew {mb:.0f} MB after the first update"
                 for name, mb in growth.items() if mb > args.growth]
    print("\n".join(["", "FAILED:", *problems]) if problems else "\nno failed requests, "
          f"every update seen within {args.visible:g} s, memory flat")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
