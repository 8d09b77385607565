#!/usr/bin/env python3
"""Notifications under load, on embedded SQLite, against real protocols on
loopback: a real SMTP server (aiosmtpd) and a Slack Web API stand-in.

1. Burst: N proposals (default 1,000) that each open a review task for a
   group that hears by email (a group address) and in a Slack channel; how
   long until every email and every Slack message has arrived.
2. With and without notifications, back to back: `loopgate bench
   --workload ingest` (auto-allowed: the notifier only moves its cursor)
   and `--workload cycle` (every proposal opens a task for the bench's
   group, which hears by email) against a server whose groups have
   notification settings, and one without; throughput and the server's CPU
   per operation (from /proc/<pid>/stat). DURATION sets each run (10s).

    target/pyvenv/bin/python scripts/notify-bench.py LOOPGATE_BIN [N] [ROUNDS]

Build the binary with `cargo build --release -p loopgate`; run in the test
virtual environment (scripts/test makes it; it has aiosmtpd and httpx).
"""

import asyncio
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from aiosmtpd.controller import Controller

TOKEN = "lgt_bench_admin_token_0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0
        self.last = 0.0

    def hit(self):
        with self.lock:
            self.n += 1
            self.last = time.monotonic()


class SmtpCount:
    def __init__(self, counter):
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):
        self.counter.hit()
        return "250 OK"


def slack_server(counter):
    n = {"ts": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            method = self.path.rsplit("/", 1)[-1]
            answer = {"ok": True}
            if method == "chat.postMessage":
                counter.hit()
                n["ts"] += 1
                answer = {"ok": True, "channel": json.loads(body)["channel"], "ts": f"1.{n['ts']}"}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve(binary, directory, env):
    log = open(os.path.join(directory, "serve.log"), "w+")
    process = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", directory],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "LOOPGATE_BOOTSTRAP_TOKEN": TOKEN, "RUST_LOG": "warn", **env},
    )
    for _ in range(300):
        log.seek(0)
        found = re.search(r"loopgate listening on (\S+)", log.read())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    raise SystemExit("the server did not start:\n" + log.read())


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def setup(base, notify, group="ops"):
    admin = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, headers=admin, timeout=30) as http:
        http.post("/v1/systems", json={"id": "burst", "name": "burst", "owner": "bench",
                                        "purpose": "bench", "risk_tier": "high",
                                        "oversight": "in_the_loop"}).raise_for_status()
        key = http.post("/v1/systems/burst/keys", json={}).json()["secret"]
        http.post("/v1/policies", json={
            "text": f'@reviewers("{group}") permit(principal, action, resource);',
            "description": "everything to review"}).raise_for_status()
        if notify:
            http.put(f"/v1/groups/{group}/notifications", json={
                "email": ["ops@example.com"], "slack_channel": "COPS"}).raise_for_status()
    return key


async def burst(base, key, n):
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers={"authorization": f"Bearer {key}"}) as http:
        sem = asyncio.Semaphore(32)

        async def one(i):
            async with sem:
                r = await http.post("/v1/proposals", json={
                    "action": "flag", "subject": {"type": "Account", "id": f"a-{i}"},
                    "input": {"n": i}, "output": {"fraud": True, "n": i}, "confidence": 0.7,
                    "idempotency_key": f"burst-{i}"})
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))


def part_burst(binary, n):
    emails, posts = Counter(), Counter()
    smtp_port = free_port()
    smtp = Controller(SmtpCount(emails), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    slack = slack_server(posts)
    with tempfile.TemporaryDirectory() as directory:
        process, base = serve(binary, directory, {
            "LOOPGATE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "LOOPGATE_PUBLIC_URL": "http://loopgate.test",
            "LOOPGATE_SLACK_BOT_TOKEN": "xoxb-bench",
            "LOOPGATE_SLACK_SIGNING_SECRET": "bench",
            "LOOPGATE_SLACK_API_URL": f"http://127.0.0.1:{slack.server_port}/api",
        })
        try:
            key = setup(base, notify=True)
            started = time.monotonic()
            asyncio.run(burst(base, key, n))
            submitted = time.monotonic() - started
            deadline = started + 120
            while (emails.n < n or posts.n < n) and time.monotonic() < deadline:
                time.sleep(0.02)
            last = max(emails.last, posts.last) - started
            print(f"burst: {n} tasks submitted in {submitted:.2f} s; "
                  f"{emails.n} emails and {posts.n} Slack messages, the last {last:.2f} s "
                  f"after the first submit ({last - submitted:.2f} s after the last); "
                  f"server peak RSS {peak_rss_mib(process.pid):.0f} MiB")
        finally:
            process.terminate()
            process.wait()
            smtp.stop()
            slack.shutdown()


def measure(binary, notify, duration, workload):
    emails = Counter()
    smtp_port = free_port()
    smtp = Controller(SmtpCount(emails), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = {"LOOPGATE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}"} if notify else {}
    with tempfile.TemporaryDirectory() as directory:
        process, base = serve(binary, directory, env)
        try:
            # The bench's reviewers are in `bench`: the group hears about
            # every task, so the notifier runs as it would.
            if notify:
                with httpx.Client(base_url=base, timeout=30,
                                  headers={"authorization": f"Bearer {TOKEN}"}) as http:
                    for group in ("bench", "ops"):
                        http.put(f"/v1/groups/{group}/notifications",
                                 json={"email": ["ops@example.com"]}).raise_for_status()
            before = cpu_seconds(process.pid)
            out = subprocess.run([binary, "bench", "--server", base, "--token", TOKEN,
                                  "--workload", workload, "--duration", duration],
                                 capture_output=True, text=True, check=True).stdout
            after = cpu_seconds(process.pid)
        finally:
            process.terminate()
            process.wait()
            smtp.stop()
    found = re.search(r"^(?:submit|cycle) .*\(n=(\d+)\)$", out, re.M)
    rate = re.search(r"^throughput\s+(\d+) (?:proposals|cycles)/s", out, re.M)
    total = int(found.group(1)) if found else 0
    return out, total, after - before, rate.group(1) if rate else "?", emails.n


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    part_burst(binary, n)
    duration = os.environ.get("DURATION", "10s")
    for workload in ("ingest", "cycle"):
        for r in range(rounds):
            for notify in (False, True):
                out, total, cpu, rate, sent = measure(binary, notify, duration, workload)
                per = cpu / total * 1e6 if total else float("nan")
                label = "with notifications   " if notify else "without notifications"
                print(f"round {r + 1} {workload} {label}: {rate}/s, {total} operations, "
                      f"server CPU {per:.0f} µs/operation, {sent} emails", flush=True)


if __name__ == "__main__":
    main()
