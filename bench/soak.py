#!/usr/bin/env python3
"""Soak run: a release permgate on loopback at a steady rate of mixed calls for a fixed time.

Every second it sends RATE requests: decisions (POST /v1/check, counted) and, one in ten,
management writes, one at a time as an operator would make them (a product switched on and off, a
key rotation, a grant and its revocation, a usage read). The writes change state without adding
apps, so memory should stay flat. Every 10 s it samples the node's resident memory. It fails
(exit 1) when any request fails. Needs a release build (cargo build --release) and Python 3.

    bench/soak.py [minutes, default 10] [rate per second, default 200]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 10
RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PORT = 18380
BASE = f"http://127.0.0.1:{PORT}"
ADMIN = "soak-admin-token-0123456789abcdef"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def call(method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    work = tempfile.mkdtemp()
    env = dict(os.environ, PERMGATE_LISTEN=f"127.0.0.1:{PORT}", PERMGATE_ADMIN_TOKEN=ADMIN, PERMGATE_LOG="warn")
    node = subprocess.Popen([os.path.join(ROOT, "target/release/permgate"), "serve"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "log"), "w"))
    try:
        for _ in range(100):
            try:
                if call("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        _, dev = call("POST", "/v1/accounts", ADMIN, {"name": "soak", "role": "developer"})
        _, rev = call("POST", "/v1/accounts", ADMIN, {"name": "soak-reviewer", "role": "reviewer"})
        dev, rev = dev["token"], rev["token"]
        _, app = call("POST", "/v1/apps", dev, {"name": "Soak", "company_name": "C", "category": "x"})
        app_id, key_id, key = app["id"], app["keys"]["rest_api"][0]["id"], app["keys"]["rest_api"][0]["key"]
        call("POST", f"/v1/apps/{app_id}/permissions", ADMIN,
             {"permission": "increased_quota", "reason": "soak",
              "params": {"rule": "local_keyword_search_daily", "limit": 1_000_000_000}})
        state = {"key": key, "key_id": key_id, "ok": 0, "failed": 0, "errors": []}
        lock = threading.Lock()
        writes = threading.Lock()

        def check():
            body = {"method": "GET", "path": "/v2/local/search/keyword.json",
                    "headers": {"authorization": f"KakaoAK {state['key']}"}}
            status, d = call("POST", "/v1/check", None, body)
            # -401: the key was rotated between reading it and the check.
            if status == 200 and d.get("code") in (0, -401):
                return True
            with lock:
                state["errors"].append(f"check: {status} {d}")
            return False

        def expect(what, got, want):
            if got[0] != want:
                with lock:
                    state["errors"].append(f"{what}: {got[0]} {got[1]}")
                return False
            return True

        def write(i):
            with writes:
                kind = (i // 10) % 4
                if kind == 0:
                    on = (i // 40) % 2 == 0
                    got = call("PUT", f"/v1/apps/{app_id}/products/kakao_login", dev, {"activated": on})
                    return expect("product", got, 200)
                if kind == 1:
                    got = call("POST", f"/v1/apps/{app_id}/keys/{state['key_id']}/rotate", dev, {})
                    if got[0] == 200:
                        state["key"], state["key_id"] = got[1]["key"], got[1]["id"]
                    return expect("rotate", got, 200)
                if kind == 2:
                    granted = call("POST", f"/v1/apps/{app_id}/permissions", ADMIN, {"permission": "kakao_moment", "reason": "soak"})
                    revoked = call("DELETE", f"/v1/apps/{app_id}/permissions/kakao_moment", rev, {"reason": "soak"})
                    return expect("grant", granted, 201) and expect("revoke", revoked, 200)
                return expect("usage", call("GET", f"/v1/apps/{app_id}/usage", dev), 200)

        def one(i):
            try:
                ok = write(i) if i % 10 == 0 else check()
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                ok = False
                with lock:
                    state["errors"].append(repr(e))
            with lock:
                state["ok" if ok else "failed"] += 1

        samples = []
        end = time.time() + MINUTES * 60
        i = 0
        next_sample = time.time()
        while time.time() < end:
            second = time.time()
            threads = []
            for _ in range(RATE):
                t = threading.Thread(target=one, args=(i,))
                t.start()
                threads.append(t)
                i += 1
                time.sleep(0.8 / RATE)
            for t in threads:
                t.join()
            if time.time() >= next_sample:
                samples.append((round(time.time() - (end - MINUTES * 60)), rss_kib(node.pid)))
                next_sample += 10
            time.sleep(max(0.0, 1.0 - (time.time() - second)))
        print(f"requests: {state['ok']} ok, {state['failed']} failed over {MINUTES} min at {RATE}/s")
        print("rss (s, KiB): " + ", ".join(f"{s}:{r}" for s, r in samples))
        if samples:
            first = samples[min(3, len(samples) - 1)][1]
            print(f"rss after 30 s {first} KiB, at the end {samples[-1][1]} KiB, max {max(r for _, r in samples)} KiB")
        for e in state["errors"][:5]:
            print("error:", e)
        return 0 if state["failed"] == 0 else 1
    finally:
        node.terminate()
        node.wait(timeout=40)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
