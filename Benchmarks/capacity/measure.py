#!/usr/bin/env python3
"""CPU per read request (history pages, search, room list) on the server and on PostgreSQL.

Starts a throwaway PostgreSQL 15 cluster (its own data directory and port), migrates it with
the release binary, seeds users, rooms and messages with SQL, starts one release
`chat-server serve`, and runs each scenario as a fixed number of requests at a fixed
concurrency through wrk. CPU comes from /proc (utime + stime): the server process, and the
postmaster with all its children (backends, walwriter, checkpointer, autovacuum; backends that
exited are counted through the postmaster's cutime + cstime), read before and after each run.
Every scenario is repeated (--reps, rounds interleaved so that noise spreads over all of them)
and the median of the repetitions is reported.

Usage (from the repository root; builds nothing):
  swift build -c release --product chat-server --scratch-path .build-capacity
  python3 Benchmarks/capacity/measure.py [--reps 3] [--concurrency 8] [--out FILE]

Writes Benchmarks/capacity/results-<commit>.json (scripts/capacity.py reads it) and prints a
summary. Stops everything it started, and removes its data directory, on exit.
"""
import argparse, base64, selectors, socket, struct, threading, hashlib, hmac, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLK = os.sysconf("SC_CLK_TCK")
SECRET = "capacity-secret-capacity-secret-capacity-0123456789"
READER = 1001          # member of the ten 10,000-message rooms (cross-room search covers them)
BIG_READER = 1002      # member of the 100,000-message room too
SENDERS = 8            # users 1001..1008 wrote the messages

# Seed: ten rooms of 10,000 messages (rooms 1..10) and one of 100,000 (room 11). Sentences of
# 4-10 words, ~70 % Korean and 30 % English, the vocabulary of Benchmarks/search/generate.sql:
# 'hello' is in ~10 % of the messages, 'zebrafish' in ~1 in 20,000 words.
SEED_SQL = r"""
\set ON_ERROR_STOP on
-- The server's own session setting: ids and seq are supplied here, no NOTIFY per row.
SET chat.announces_own_changes = on;
SET auto_explain.log_min_duration = -1;
INSERT INTO users (user_id, user_name) SELECT 1000 + g, 'cap' || g FROM generate_series(1, 8) g;
INSERT INTO rooms (room_name, room_type, created_by, max_participants)
SELECT 'capacity ' || g, 'group', 1001, 100 FROM generate_series(1, 11) g;
INSERT INTO room_participants (room_id, user_id)
SELECT r, 1000 + u FROM generate_series(1, 10) r, generate_series(1, 8) u;
INSERT INTO room_participants (room_id, user_id) SELECT 11, 1000 + u FROM generate_series(2, 8) u;
-- Sockets and sends: 2,000 small rooms (12..2011) of users 2001..2008, no messages yet.
INSERT INTO users (user_id, user_name) SELECT 2000 + g, 'cap' || (1000 + g) FROM generate_series(1, 8) g;
INSERT INTO rooms (room_name, room_type, created_by, max_participants)
SELECT 'small ' || g, 'group', 2001, 100 FROM generate_series(1, 2000) g;
INSERT INTO room_participants (room_id, user_id)
SELECT r, 2000 + u FROM generate_series(12, 2011) r, generate_series(1, 8) u;

CREATE TEMP TABLE plan (g bigint, room bigint, seq bigint);
INSERT INTO plan SELECT g, 1 + (g % 10), 1 + g / 10 FROM generate_series(0, 99999) g;
INSERT INTO plan SELECT 100000 + g, 11, 1 + g FROM generate_series(0, 99999) g;

INSERT INTO messages (message_id, room_id, sender_id, message_content, message_type, created_at, seq)
SELECT nextval('messages_message_id_seq'), p.room, 1001 + (p.g % 8),
    (SELECT string_agg(
        CASE
            WHEN random() < 0.00005 THEN 'zebrafish'
            WHEN random() < 0.7 THEN (ARRAY['안녕하세요', '반갑습니다', '오늘', '내일', '회의', '점심', '저녁', '커피',
                '프로젝트', '일정', '확인', '부탁드립니다', '감사합니다', '김철수가', '박주호', '이영희', '서울', '부산',
                '주말', '여행', '사진', '파일', '공유', '업데이트', '배포', '서버', '데이터베이스', '검색', '테스트',
                '문서', '철수랑', '괜찮아요', '알겠습니다', '잠시만요'])[1 + floor(random() * 34)::int]
            ELSE (ARRAY['hello', 'meeting', 'lunch', 'deploy', 'server', 'database', 'search', 'test', 'review',
                'merge', 'release', 'coffee', 'weekend', 'photo', 'file', 'update', 'please', 'thanks', 'tomorrow',
                'today'])[1 + floor(random() * 20)::int]
        END, ' ')
     FROM generate_series(1, 4 + (p.g % 7))),
    'text', now() - make_interval(secs => (200000 - p.g)), p.seq
FROM plan p ORDER BY p.g;

UPDATE rooms r SET last_message_id = m.max_id, last_seq = m.max_seq, last_message_at = m.max_at
FROM (SELECT room_id, max(message_id) AS max_id, max(seq) AS max_seq, max(created_at) AS max_at
      FROM messages GROUP BY room_id) m
WHERE m.room_id = r.room_id;
-- Every reader's read position is 20 ids behind the room's last message (room list: unread
-- counts): rooms 1..10 interleave their ids, so that is 1-2 unread messages each (room 11: 20).
UPDATE room_participants p SET last_read_message_id = r.last_message_id - 20, last_read_at = now()
FROM rooms r WHERE r.room_id = p.room_id AND r.room_id <= 11;
"""


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def pg_bin():
    for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        p = f"/usr/lib/postgresql/{d}/bin"
        if os.path.exists(f"{p}/pg_ctl"):
            return p
    raise SystemExit("no PostgreSQL binaries under /usr/lib/postgresql")


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.getuid() == 0 else cmd


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=7", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


# ----------------------------------------------------------------------------- /proc

def proc_cpu(pid, children=False):
    """utime + stime (+ cutime + cstime with children=True) of a process, in ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fl = data[data.rindex(b")") + 2:].split()
    cpu = int(fl[11]) + int(fl[12])
    if children:
        cpu += int(fl[13]) + int(fl[14])
    return cpu, int(fl[1])  # cpu, ppid


def pg_cpu(postmaster):
    """Ticks of the postmaster (with reaped children) plus its live children."""
    total = proc_cpu(postmaster, children=True)[0]
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != postmaster:
            s = proc_cpu(int(name))
            if s and s[1] == postmaster:
                total += s[0]
    return total


def machine_busy():
    with open("/proc/stat") as f:
        fl = [int(x) for x in f.readline().split()[1:]]
    return fl[0] + fl[1] + fl[2] + fl[5] + fl[6] + fl[7]


# ----------------------------------------------------------------------------- auth

def token(user_id):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": str(user_id), "name": f"cap{user_id - 1000}",
                              "exp": int(time.time()) + 6 * 3600}).encode())
    sig = b64(hmac.new(SECRET.encode(), header + b"." + payload, hashlib.sha256).digest())
    return (header + b"." + payload + b"." + sig).decode()


# ----------------------------------------------------------------------------- wrk

WRK_LUA = r"""
-- Fixed number of requests per wrk thread: each thread stops after its share and says so (wrk's
-- main thread sleeps for -d regardless; measure.py interrupts it once every thread is done).
local path, auth, limit = "%(path)s", "Bearer %(token)s", %(per_thread)d
local count, bad = 0, 0
wrk.method = "GET"
wrk.headers["Authorization"] = auth
request = function() return wrk.format("GET", path) end
response = function(status, headers, body)
  count = count + 1
  if status ~= 200 then bad = bad + 1 end
  if count == limit then io.stdout:write("CAPACITY-THREAD-DONE\n"); io.stdout:flush(); wrk.thread:stop() end
end
"""


def wrk_run(port, path, tok, requests, conc, threads=2, lua=None):
    per_thread = max(1, requests // threads)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write((lua or WRK_LUA) % {"path": path, "token": tok, "per_thread": per_thread})
        script = f.name
    try:
        p = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(conc), "-d", "600s", "--latency", "-s", script,
                              f"http://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
        lines, done_threads = [], 0
        for line in p.stdout:
            lines.append(line)
            if line.startswith("CAPACITY-THREAD-DONE"):
                done_threads += 1
                if done_threads == threads:
                    p.send_signal(signal.SIGINT)
        if p.wait() != 0:
            raise SystemExit(f"wrk failed: {''.join(lines)[-500:]}")
        out = "".join(lines)
    finally:
        os.unlink(script)
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    done = int(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    lat = {}
    for p in ("50", "99"):
        mm = re.search(rf"\s{p}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)
        if mm:
            v = float(mm.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[mm.group(2)]
            lat[f"p{p}_ms"] = round(v, 2)
    return {"requests": done, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else None, **lat}


SEND_LUA = r"""
-- POSTs a 100-byte text message into a random room of 12..2011, a fixed number per thread.
local auth, limit = "Bearer %(token)s", %(per_thread)d
local count = 0
local body = '{"message_content": "capacity probe message, about one hundred bytes of text to look like a chat line ok", "message_type": "text"}'
request = function()
  local room = math.random(12, 2011)
  return wrk.format("POST", "/chat/rooms/" .. room .. "/messages/",
    {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  count = count + 1
  if count == limit then io.stdout:write("CAPACITY-THREAD-DONE\n"); io.stdout:flush(); wrk.thread:stop() end
end
"""


class Sockets:
    """Idle authenticated room sockets (stdlib WebSocket client): answers pings, counts frames."""

    def __init__(self, port, paths):
        self.port, self.paths = port, paths
        self.sel = selectors.DefaultSelector()
        self.socks, self.bufs = [], {}
        self.frames = self.messages = self.closed = 0
        self.stop = threading.Event()
        self.thread = None

    def open(self):
        for path in self.paths:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit(f"socket closed during the upgrade of {path}")
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            if b" 101 " not in head.split(b"\r\n")[0]:
                raise SystemExit(f"upgrade refused: {head[:80]!r}")
            s.setblocking(False)
            self.socks.append(s)
            self.bufs[s] = rest
            self.sel.register(s, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def pong(self, s, payload):
        mask = os.urandom(4)
        s.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def loop(self):
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.2):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed += 1
                    self.sel.unregister(s)
                    continue
                buf = self.bufs[s] + chunk
                while len(buf) >= 2:
                    op, n, h = buf[0] & 0x0F, buf[1] & 0x7F, 2
                    if n == 126:
                        if len(buf) < 4: break
                        n, h = struct.unpack(">H", buf[2:4])[0], 4
                    elif n == 127:
                        if len(buf) < 10: break
                        n, h = struct.unpack(">Q", buf[2:10])[0], 10
                    if len(buf) < h + n:
                        break
                    payload, buf = buf[h:h + n], buf[h + n:]
                    if op == 0x9:
                        self.pong(s, payload)
                    elif op == 0x1:
                        self.frames += 1
                        if b'"type":"message"' in payload or b'"type": "message"' in payload:
                            self.messages += 1
                    elif op == 0x8:
                        self.closed += 1
                self.bufs[s] = buf

    def close(self):
        self.stop.set()
        if self.thread:
            self.thread.join()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.sel.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------- main

def snapshot(server, postmaster):
    return proc_cpu(server.pid)[0], pg_cpu(postmaster), machine_busy(), time.monotonic()


def delta(a, b):
    wall = b[3] - a[3]
    return (b[0] - a[0]) / CLK, (b[1] - a[1]) / CLK, (b[2] - a[2]) / CLK, wall


def realtime_phase(a, server, postmaster, n):
    """Idle sockets (CPU and RSS per socket) and sends with and without one subscriber per room."""
    count = min(a.sockets, 2000)
    paths = [f"/chat/ws/{12 + i}?token={token(2001)}" for i in range(count)]
    send_tok, sends = token(2002), n(8000)
    wrk_run(a.http_port, "", send_tok, max(20, sends // 10), a.concurrency, lua=SEND_LUA)  # warm-up
    time.sleep(2)
    b0 = snapshot(server, postmaster)
    time.sleep(10)
    ds, dp, _, wall = delta(b0, snapshot(server, postmaster))
    base = {"server_cores": ds / wall, "pg_cores": dp / wall}
    rows = {"idle_sockets": [], "send_with_socket": [], "send_without_socket": []}

    def send_row(subtract):
        time.sleep(1)
        s0 = snapshot(server, postmaster)
        r = wrk_run(a.http_port, "", send_tok, sends, a.concurrency, lua=SEND_LUA)
        time.sleep(1)  # deliveries drain
        ds, dp, dm, wall = delta(s0, snapshot(server, postmaster))
        k = r["requests"]
        # The idle cost of what is open meanwhile (measured just before) is not the sends' cost.
        ds_net, dp_net = ds - subtract["server_cores"] * wall, dp - subtract["pg_cores"] * wall
        return {"sends": k, "wall_s": round(wall, 3), "sends_per_s": round(k / (wall - 1), 1),
                "server_cpu_ms_per_send": round(ds_net / k * 1000, 4), "pg_cpu_ms_per_send": round(dp_net / k * 1000, 4),
                "other_cores": round((dm - ds - dp) / wall, 3), "non_2xx": r["non_2xx"],
                "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms")}

    for rep in range(a.reps):
        rss0 = rss_kb(server.pid)
        socks = Sockets(a.http_port, paths)
        t0 = time.monotonic()
        socks.open()
        connect_s = time.monotonic() - t0
        time.sleep(10)  # presence rows, user_status frames, first pings settle
        rss1 = rss_kb(server.pid)
        s0 = snapshot(server, postmaster)
        time.sleep(30)  # one WS_PING_SECONDS interval: every socket pinged once
        ds, dp, dm, wall = delta(s0, snapshot(server, postmaster))
        idle = {"sockets": count, "open_failed_or_closed": socks.closed, "connect_s": round(connect_s, 2),
                "rss_kb_per_socket": round((rss1 - rss0) / count, 1), "window_s": round(wall, 1),
                "server_us_per_socket_per_s": round((ds / wall - base["server_cores"]) / count * 1e6, 3),
                "pg_us_per_socket_per_s": round((dp / wall - base["pg_cores"]) / count * 1e6, 3),
                "server_cores": round(ds / wall, 4), "pg_cores": round(dp / wall, 4),
                "other_cores": round((dm - ds - dp) / wall, 3)}
        rows["idle_sockets"].append(idle)
        log(f"idle sockets rep {rep + 1}: {idle}")
        sub = {"server_cores": ds / wall, "pg_cores": dp / wall}
        before = socks.messages
        row = send_row(sub)
        row["delivered"] = socks.messages - before
        rows["send_with_socket"].append(row)
        log(f"send with a subscriber per room rep {rep + 1}: {row}")
        socks.close()
        time.sleep(5)
        row = send_row(base)
        rows["send_without_socket"].append(row)
        log(f"send without sockets rep {rep + 1}: {row}")

    med = lambda rs, k: round(statistics.median(x[k] for x in rs), 4)
    w, wo = rows["send_with_socket"], rows["send_without_socket"]
    summary = {
        "idle_socket": {"server_us_per_socket_per_s": med(rows["idle_sockets"], "server_us_per_socket_per_s"),
                        "pg_us_per_socket_per_s": med(rows["idle_sockets"], "pg_us_per_socket_per_s"),
                        # the first repetition only: later ones reuse the memory the closed sockets freed
                        "rss_kb_per_socket": rows["idle_sockets"][0]["rss_kb_per_socket"], "sockets": count},
        "send_without_socket": {"server_cpu_ms_per_send": med(wo, "server_cpu_ms_per_send"),
                                "pg_cpu_ms_per_send": med(wo, "pg_cpu_ms_per_send"), "sends_per_s": med(wo, "sends_per_s")},
        "send_with_socket": {"server_cpu_ms_per_send": med(w, "server_cpu_ms_per_send"),
                             "pg_cpu_ms_per_send": med(w, "pg_cpu_ms_per_send"), "sends_per_s": med(w, "sends_per_s")},
    }
    # What one wake-up of one instance for one room, plus its one delivery, adds to a send.
    summary["wakeup_and_delivery"] = {
        "server_cpu_ms": round(summary["send_with_socket"]["server_cpu_ms_per_send"]
                               - summary["send_without_socket"]["server_cpu_ms_per_send"], 4),
        "pg_cpu_ms": round(summary["send_with_socket"]["pg_cpu_ms_per_send"]
                           - summary["send_without_socket"]["pg_cpu_ms_per_send"], 4)}
    return {"method": (f"{count} room sockets of one user, one per small room, opened then left idle for 30 s "
                       "(WS_PING_SECONDS=30: each socket pinged once); CPU above the no-socket idle rate, per "
                       f"socket per second. Sends: wrk -c{a.concurrency} POSTs into random rooms of the 2,000, "
                       "100-byte text, with every room's socket open (one wake-up and one delivery per message "
                       "on this instance) and with none, alternating; the idle rate of what is open is "
                       "subtracted; 1 s of drain after each run is included"),
            "summary": summary, "runs": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build-capacity", "release", "chat-server"))
    ap.add_argument("--pgdata", default=os.path.join(ROOT, ".pgdata-capacity"))
    ap.add_argument("--pg-port", type=int, default=54340)
    ap.add_argument("--http-port", type=int, default=54341)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every scenario's request count")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--sockets", type=int, default=2000, help="idle room sockets (one per small room, at most 2000)")
    ap.add_argument("--no-realtime", action="store_true", help="skip the socket and send phases")
    ap.add_argument("--out", default=None)
    ap.add_argument("--explain-ms", type=int, default=15,
                    help="auto_explain's log_min_duration: plans of slower statements go to plans-<commit>.txt")
    a = ap.parse_args()
    if not os.access(a.binary, os.X_OK):
        raise SystemExit(f"{a.binary} missing: swift build -c release --product chat-server --scratch-path .build-capacity")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    commit = git_commit()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "Sources", "Package.swift"],
                           capture_output=True, text=True).stdout.split("\n")
    dirty = [l for l in dirty if l.strip()]
    out_path = a.out or os.path.join(ROOT, "Benchmarks", "capacity", f"results-{commit}.json")
    plans_path = os.path.splitext(out_path)[0].replace("results-", "plans-") + ".txt"

    bin_dir = pg_bin()
    procs = []
    server = None
    started_pg = False

    def stop_all(*_):
        if server and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        if started_pg:
            try:  # the plans auto_explain logged, one of each distinct statement
                with open(f"{a.pgdata}/server.log", encoding="utf-8", errors="replace") as f:
                    log_text = f.read()
                plans, seen = [], set()
                for block in re.split(r"\n(?=\S+ \S+ UTC \[\d+\] LOG:  duration:)", log_text):
                    if "Query Text:" not in block:
                        continue
                    text = block.split("Query Text:", 1)[1].split("\n", 1)[0].strip()
                    if text not in seen:
                        seen.add(text)
                        plans.append(block.strip())
                if plans:
                    with open(plans_path, "w", encoding="utf-8") as f:
                        f.write("\n\n".join(plans) + "\n")
            except OSError:
                pass
            subprocess.run(as_pg([f"{bin_dir}/pg_ctl", "-D", a.pgdata, "-m", "fast", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(a.pgdata, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        # PostgreSQL: a fresh cluster, fsync on, default memory settings (as run.sh's).
        shutil.rmtree(a.pgdata, ignore_errors=True)
        os.makedirs(a.pgdata)
        if os.getuid() == 0:
            shutil.chown(a.pgdata, "postgres", "postgres")
        run(as_pg([f"{bin_dir}/initdb", "-D", a.pgdata, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                   "--locale=C.UTF-8"]), stdout=subprocess.DEVNULL)
        opts = (f"-c listen_addresses=127.0.0.1 -p {a.pg_port} -c unix_socket_directories='{a.pgdata}' "
                f"-c max_connections=100 -c fsync=on -c session_preload_libraries=auto_explain "
                f"-c auto_explain.log_min_duration={a.explain_ms} -c auto_explain.log_format=text")
        run(as_pg([f"{bin_dir}/pg_ctl", "-D", a.pgdata, "-l", f"{a.pgdata}/server.log", "-w", "-t", "60",
                   "-o", opts, "start"]), stdout=subprocess.DEVNULL)
        started_pg = True
        admin = f"postgresql://postgres@127.0.0.1:{a.pg_port}/postgres"
        db = f"postgresql://postgres@127.0.0.1:{a.pg_port}/chat"
        run(["psql", "-qX", admin, "-c", "CREATE DATABASE chat"], stdout=subprocess.DEVNULL)
        with open(f"{a.pgdata}/postmaster.pid") as f:
            postmaster = int(f.readline())
        pg_version = subprocess.run(["psql", "-XAt", db, "-c", "SHOW server_version"], capture_output=True,
                                    text=True).stdout.strip()

        env = dict(os.environ, WS_MAX_SOCKETS_PER_USER="100000", DATABASE_URL=db, JWT_SECRET=SECRET, PORT=str(a.http_port), HOST="127.0.0.1",
                   BCRYPT_COST="4", ACCESS_LOG="false", RETENTION_INTERVAL_SECONDS="0", LOG_LEVEL="warning",
                   UPLOAD_DIR=tempfile.mkdtemp(prefix="capacity-uploads-"))
        log("migrating")
        run([a.binary, "migrate"], env=env, stdout=subprocess.DEVNULL)
        log("seeding 200,000 messages (about a minute)")
        t0 = time.monotonic()
        run(["psql", "-qX", "-1", db], input=SEED_SQL.encode(), stdout=subprocess.DEVNULL)
        run(["psql", "-qX", db, "-c", "VACUUM (ANALYZE) messages, rooms, room_participants, users"],
            stdout=subprocess.DEVNULL)
        log(f"seeded in {time.monotonic() - t0:.0f} s")
        facts = {}
        for key, sql in {
            "room_messages": "SELECT count(*) FROM messages WHERE room_id = 1",
            "big_room_messages": "SELECT count(*) FROM messages WHERE room_id = 11",
            "messages_total": "SELECT count(*) FROM messages",
            "hello_hits_room": "SELECT count(*) FROM messages WHERE room_id = 1 AND message_content ~ '\\mhello'",
            "zebrafish_hits_all": "SELECT count(*) FROM messages WHERE room_id <= 10 AND message_content ~ 'zebrafish'",
            "messages_heap_mb": "SELECT round(pg_table_size('messages') / 1048576.0)",
        }.items():
            facts[key] = int(float(subprocess.run(["psql", "-XAt", db, "-c", sql], capture_output=True, text=True,
                                                  check=True).stdout.strip()))
        mid_id = int(subprocess.run(["psql", "-XAt", db, "-c",
                                     "SELECT message_id FROM messages WHERE room_id = 1 AND seq = 5000"],
                                    capture_output=True, text=True, check=True).stdout.strip())

        log("starting chat-server")
        server = subprocess.Popen([a.binary, "serve"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(f"{a.pgdata}/chat-server.log", "w"), start_new_session=True)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{a.http_port}/health", timeout=1).read()
                break
            except Exception:
                if server.poll() is not None:
                    raise SystemExit(f"chat-server exited; see {a.pgdata}/chat-server.log")
                time.sleep(0.1)

        tok, big_tok = token(READER), token(BIG_READER)
        n = lambda k: max(20, int(k * a.scale))
        scenarios = [
            # name, path, token, requests, what it is
            ("history_page1", "/chat/rooms/1/messages/?page=1&size=50", tok, n(1000),
             "GET /chat/rooms/{id}/messages/ page 1, size 50, room of 10,000 messages"),
            ("history_before_id", f"/chat/rooms/1/messages/?before_id={mid_id}&size=50", tok, n(6000),
             "the same with a before_id cursor in the middle of the room"),
            ("history_page1_big_room", "/chat/rooms/11/messages/?page=1&size=50", big_tok, n(1500),
             "page 1, size 50, room of 100,000 messages (total_count is a count over the room)"),
            # 150 requests until a5be58f, when a room list cost 421 ms of PostgreSQL CPU; at ~1 ms
            # 150 took 0.15 s, a few clock ticks.
            ("room_list", "/chat/rooms/", tok, n(3000),
             "GET /chat/rooms/: 10 rooms, 1–2 unread each"),
            ("search_room_rare", "/chat/rooms/1/search/?query=zebrafish", tok, n(4000),
             "GET /chat/rooms/{id}/search/ for a rare word (a few hits), room of 10,000"),
            ("search_room_common", "/chat/rooms/1/search/?query=hello", tok, n(1500),
             "the same for a common word (~10 % of messages match), size 20"),
            ("search_room_korean", "/chat/rooms/1/search/?query=%EC%95%88%EB%85%95", tok, n(1000),
             "the same for '안녕' (prefix and Hangul bigram match)"),
            ("search_all_rare", "/chat/search/?query=zebrafish", tok, n(4000),
             "GET /chat/search/ across the caller's 10 rooms (100,000 messages), rare word"),
            ("search_all_common", "/chat/search/?query=hello", tok, n(200),
             "the same for a common word (~10,000 hits: total_count is exact)"),
        ]
        if a.only:
            wanted = set(a.only.split(","))
            scenarios = [s for s in scenarios if s[0] in wanted]

        # Check every path answers 200 before measuring.
        for name, path, t, _, _ in scenarios:
            req = urllib.request.Request(f"http://127.0.0.1:{a.http_port}{path}", headers={"Authorization": "Bearer " + t})
            body = json.loads(urllib.request.urlopen(req, timeout=30).read())
            facts[f"{name}_total_count"] = body.get("total_count")

        # Idle background (presence heartbeat, polls, autovacuum), for reference.
        time.sleep(2)
        s0, p0, m0, t0 = proc_cpu(server.pid)[0], pg_cpu(postmaster), machine_busy(), time.monotonic()
        time.sleep(5)
        idle_wall = time.monotonic() - t0
        idle = {"server_cores": round((proc_cpu(server.pid)[0] - s0) / CLK / idle_wall, 4),
                "pg_cores": round((pg_cpu(postmaster) - p0) / CLK / idle_wall, 4),
                "machine_busy_cores": round((machine_busy() - m0) / CLK / idle_wall, 3)}
        log(f"idle: {idle}")

        # Warm-up: every scenario once at a tenth of its count (plans, caches, auth cache).
        for name, path, t, count, _ in scenarios:
            wrk_run(a.http_port, path, t, max(20, count // 10), a.concurrency)

        runs = {s[0]: [] for s in scenarios}
        for rep in range(a.reps):
            for name, path, t, count, _ in scenarios:
                time.sleep(1)
                s0, p0, m0, t0 = proc_cpu(server.pid)[0], pg_cpu(postmaster), machine_busy(), time.monotonic()
                r = wrk_run(a.http_port, path, t, count, a.concurrency)
                wall = time.monotonic() - t0
                ds, dp, dm = (proc_cpu(server.pid)[0] - s0) / CLK, (pg_cpu(postmaster) - p0) / CLK, (machine_busy() - m0) / CLK
                k = r["requests"]
                o = {"rep": rep + 1, "requests": k, "wall_s": round(wall, 3), "requests_per_s": round(k / wall, 1),
                     "server_cpu_ms_per_request": round(ds / k * 1000, 4),
                     "pg_cpu_ms_per_request": round(dp / k * 1000, 4),
                     "server_cores": round(ds / wall, 3), "pg_cores": round(dp / wall, 3),
                     "machine_busy_cores": round(dm / wall, 3),
                     # what neither the server nor PostgreSQL used: wrk, and anything else on the machine
                     "other_cores": round((dm - ds - dp) / wall, 3),
                     "non_2xx": r["non_2xx"], "socket_errors": r["socket_errors"],
                     "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms")}
                runs[name].append(o)
                log(f"{name} rep {rep + 1}: {o['requests_per_s']}/s, server {o['server_cpu_ms_per_request']} ms, "
                    f"PG {o['pg_cpu_ms_per_request']} ms per request, p50 {o.get('p50_ms')} ms, "
                    f"other {o['other_cores']} cores, non-2xx {o['non_2xx']}")

        realtime = None
        if not a.no_realtime:
            realtime = realtime_phase(a, server, postmaster, n)

        results = {}
        for name, path, _, count, what in scenarios:
            rs = runs[name]
            med = lambda key: statistics.median(x[key] for x in rs)
            results[name] = {
                "what": what, "path": path, "requests_per_rep": count, "concurrency": a.concurrency,
                "server_cpu_ms_per_request": round(med("server_cpu_ms_per_request"), 4),
                "pg_cpu_ms_per_request": round(med("pg_cpu_ms_per_request"), 4),
                "requests_per_s": round(med("requests_per_s"), 1),
                "p50_ms": med("p50_ms") if all(x.get("p50_ms") is not None for x in rs) else None,
                "p99_ms": med("p99_ms") if all(x.get("p99_ms") is not None for x in rs) else None,
                "spread_server_pct": round(100 * (max(x["server_cpu_ms_per_request"] for x in rs)
                                                  - min(x["server_cpu_ms_per_request"] for x in rs))
                                           / med("server_cpu_ms_per_request"), 1),
                "spread_pg_pct": round(100 * (max(x["pg_cpu_ms_per_request"] for x in rs)
                                              - min(x["pg_cpu_ms_per_request"] for x in rs))
                                       / med("pg_cpu_ms_per_request"), 1),
                "runs": rs,
            }
        with open("/proc/cpuinfo") as f:
            cpu_model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
        doc = {
            "commit": commit, "uncommitted_sources_at_run": dirty, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpu": cpu_model, "cores": os.cpu_count()}, "postgresql": pg_version,
            "method": ("one release chat-server, one PostgreSQL cluster (fsync on, default settings), wrk -t2 "
                       f"-c{a.concurrency} with a fixed number of requests per scenario; CPU = utime+stime from /proc of "
                       "the server and of the postmaster with all its children; median of "
                       f"{a.reps} repetitions, rounds interleaved; after a warm-up round"),
            "env": {"BCRYPT_COST": "4", "ACCESS_LOG": "false", "RETENTION_INTERVAL_SECONDS": "0",
                    "DB_POOL_SIZE": "default (10)", "AUTH_CACHE_MS": "default"},
            "data": facts, "idle": idle, "reps": a.reps, "results": results, "realtime": realtime,
        }
        with open(out_path, "w") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        log(f"wrote {os.path.relpath(out_path, ROOT)}")
        if realtime:
            for name, r in realtime["summary"].items():
                print(f"{name}: {r}")
        print(f"{'scenario':<24} {'req/s':>8} {'server ms':>10} {'PG ms':>8} {'p50 ms':>7} {'spread srv/pg %':>16}")
        for name, r in results.items():
            print(f"{name:<24} {r['requests_per_s']:>8} {r['server_cpu_ms_per_request']:>10} "
                  f"{r['pg_cpu_ms_per_request']:>8} {r['p50_ms'] or '-':>7} "
                  f"{r['spread_server_pct']:>7}/{r['spread_pg_pct']}")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
