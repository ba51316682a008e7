#!/usr/bin/env python3
"""Issue 12's attacks re-run against a running chat-server (release build), with figures:

  1. RSS after 10,000 WebSocket upgrades (half refused for a bad token, half accepted).
  2. GET /uploads/<file> latency, alone and during a flood of failed logins
     (16 concurrent clients, bcrypt at the server's BCRYPT_COST).
  3. A typing flood from one member: what a reader of the same room and a reader of an
     unrelated room receive (closed with 4408? events missed?).

    python3 Benchmarks/floods/floods.py --port 8000 --secret "$JWT_SECRET" --pid <server pid>

Needs `pip install websockets requests` (test tooling only). Prints a Markdown report.
"""
import argparse, asyncio, base64, hashlib, hmac, json, os, random, statistics, threading, time
import requests, websockets

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=8000)
ap.add_argument("--secret", required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--upgrades", type=int, default=10_000)
args = ap.parse_args()
BASE = f"http://127.0.0.1:{args.port}"
WS = f"ws://127.0.0.1:{args.port}"


def token(uid, name):
    b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b(json.dumps({"sub": str(uid), "name": name, "exp": int(time.time()) + 3600}).encode())
    s = b(hmac.new(args.secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{s}"


def rss_kb():
    for line in open(f"/proc/{args.pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def user(name):
    uid = random.randint(10**12, 9 * 10**12)
    t = token(uid, name)
    assert requests.get(f"{BASE}/auth/me", headers={"Authorization": f"Bearer {t}"}).status_code == 200
    return uid, t


def group(owner, members):
    r = requests.post(f"{BASE}/chat/rooms/", headers={"Authorization": f"Bearer {owner[1]}"},
                      json={"room_name": "flood", "room_type": "group", "participant_ids": [m[0] for m in members]})
    return r.json()["room_id"]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


report = ["# Issue 12 floods re-run", "", f"server pid {args.pid}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]

# 1. Upgrades.
async def upgrades(n, room, good):
    async def one(i):
        path = f"{WS}/chat/ws/{room}?token=" + ("bad" if i % 2 == 0 else good)
        try:
            async with websockets.connect(path, open_timeout=10) as ws:
                if i % 2 == 0:
                    try:
                        await asyncio.wait_for(ws.recv(), 10)
                    except websockets.ConnectionClosed:
                        pass
        except Exception:
            pass
    for start in range(0, n, 20):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 20))))

alice, bob = user("alice"), user("bob")
room = group(alice, [bob])
before = rss_kb()
asyncio.run(upgrades(args.upgrades // 2, room, alice[1]))
middle = rss_kb()
asyncio.run(upgrades(args.upgrades // 2, room, alice[1]))
after = rss_kb()
report += ["## 1. RSS across WebSocket upgrades (half refused, half accepted)", "",
           "| after | RSS KB |", "|---|---|", f"| start | {before:,} |",
           f"| {args.upgrades // 2:,} upgrades | {middle:,} |", f"| {args.upgrades:,} upgrades | {after:,} |", "",
           f"Second half: {after - middle:+,} KB ({(after - middle) * 1024 / (args.upgrades // 2):.0f} bytes per upgrade).", ""]

# 2. Uploads under a login flood.
files = {"file": ("f.png", b"\x89PNG\r\n\x1a\n" + os.urandom(2000), "image/png")}
up = requests.post(f"{BASE}/chat/rooms/{room}/messages/", headers={"Authorization": f"Bearer {alice[1]}"},
                   data={"message_type": "image"}, files=files).json()
url = BASE + up["file_url"] if up["file_url"].startswith("/") else up["file_url"]
name = f"flood-{random.randint(0, 10**9)}"
requests.post(f"{BASE}/auth/register", json={"user_name": name, "password": "correct horse"})

def sample(seconds):
    s = requests.Session()
    lat = []
    end = time.time() + seconds
    while time.time() < end:
        t0 = time.perf_counter()
        assert s.get(url).status_code == 200
        lat.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.02)
    return lat

quiet = sample(5)
stop = threading.Event()
answers = {}
def flood():
    s = requests.Session()
    while not stop.is_set():
        code = s.post(f"{BASE}/auth/login", json={"user_name": name, "password": f"wrong {random.random()}"},
                      headers={"X-Forwarded-For": f"10.0.{random.randint(0,255)}.{random.randint(0,255)}"}).status_code
        answers[code] = answers.get(code, 0) + 1
threads = [threading.Thread(target=flood) for _ in range(16)]
for t in threads: t.start()
time.sleep(1)
loaded = sample(10)
stop.set()
for t in threads: t.join()
report += ["## 2. GET /uploads/<file> during 16 concurrent failed logins", "",
           "| | samples | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|",
           f"| quiet | {len(quiet)} | {statistics.median(quiet):.1f} | {pct(quiet, .99):.1f} | {max(quiet):.1f} |",
           f"| login flood | {len(loaded)} | {statistics.median(loaded):.1f} | {pct(loaded, .99):.1f} | {max(loaded):.1f} |", "",
           f"Login answers during the flood: {dict(sorted(answers.items()))} (401 wrong password, 429 rate limited, 503 hashing queue full).", ""]

# 3. Typing flood.
async def typing_flood():
    flooder, reader = user("flooder"), user("reader")
    other_a, other_b = user("other-a"), user("other-b")
    flooded = group(flooder, [reader])
    unrelated = group(other_a, [other_b])
    async with websockets.connect(f"{WS}/chat/ws/{flooded}?token={flooder[1]}") as fws, \
            websockets.connect(f"{WS}/chat/ws/{flooded}?token={reader[1]}") as rws, \
            websockets.connect(f"{WS}/chat/ws/{unrelated}?token={other_b[1]}") as uws:
        for ws in (fws, rws, uws):
            await ws.send(json.dumps({"type": "ping"}))
        ids = []
        for i in range(20):
            r = requests.post(f"{BASE}/chat/rooms/{unrelated}/messages/", headers={"Authorization": f"Bearer {other_a[1]}"},
                              json={"message_content": f"m{i}"})
            ids.append(r.json()["message_id"])
        sent = 0
        end = time.time() + 5
        frame = json.dumps({"type": "typing", "is_typing": True})
        async def delete_all():
            for mid in ids:
                await asyncio.to_thread(requests.delete, f"{BASE}/chat/rooms/{unrelated}/messages/{mid}/",
                                        headers={"Authorization": f"Bearer {other_a[1]}"})
        deleter = asyncio.create_task(delete_all())
        while time.time() < end:
            await fws.send(frame)
            sent += 1
            if sent % 500 == 0:
                await asyncio.sleep(0)
        await deleter
        async def drain(ws, seconds):
            kinds, closed = {}, None
            end = time.time() + seconds
            try:
                while time.time() < end:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, end - time.time())))
                    kinds[msg["type"]] = kinds.get(msg["type"], 0) + 1
            except asyncio.TimeoutError:
                pass
            except websockets.ConnectionClosed as e:
                closed = e.rcvd.code if e.rcvd else None
            return kinds, closed
        reader_kinds, reader_closed = await drain(rws, 3)
        other_kinds, other_closed = await drain(uws, 3)
        return sent, reader_kinds, reader_closed, other_kinds, other_closed

sent, reader_kinds, reader_closed, other_kinds, other_closed = asyncio.run(typing_flood())
report += ["## 3. A typing flood from one member (5 s, as fast as one client sends)", "",
           f"- frames sent by the flooder: {sent:,}",
           f"- reader of the same room received: {reader_kinds}; closed: {reader_closed or 'no'}",
           f"- reader of an unrelated room received: {other_kinds} (20 message_deleted expected); closed: {other_closed or 'no'}", ""]
print("\n".join(report))
