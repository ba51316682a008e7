"""Search latency: HTTP (chat-server) vs the same SQL (pgbench), p50/p99, plus plans.

Usage: measure.py DATABASE_URL ROOM_ID HTTP_PORT PLANS_FILE
"""
import base64, hashlib, hmac, http.client, json, os, statistics, subprocess, sys, tempfile, time, urllib.parse

DB, ROOM, PORT, PLANS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
SECRET = b"bench-secret-bench-secret-bench-secret-1234"
USER = 900000001

# query text -> (tsquery, infix terms), as SearchQuery builds them.
QUERIES = {
    "무지개떡 (rare, Korean)": ("무지개떡", "('무지개떡':* | ('~무지' & '~지개' & '~개떡'))", ["무지개떡"]),
    "zebrafish (rare, English)": ("zebrafish", "'zebrafish':*", []),
    "철수 (infix, ~1/4 of messages)": ("철수", "('철수':* | ('~철수'))", ["철수"]),
    "안녕 (common prefix)": ("안녕", "('안녕':* | ('~안녕'))", ["안녕"]),
    "hello (common)": ("hello", "'hello':*", []),
    "회의 커피 (two common terms)": ("회의 커피", "('회의':* | ('~회의')) & ('커피':* | ('~커피'))", ["회의", "커피"]),
}


def token():
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": str(USER), "exp": int(time.time()) + 3600}).encode())
    signature = b64(hmac.new(SECRET, header + b"." + payload, hashlib.sha256).digest())
    return (header + b"." + payload + b"." + signature).decode()


def percentiles(samples_ms):
    samples = sorted(samples_ms)
    def pick(p):
        return samples[min(len(samples) - 1, int(round(p / 100 * (len(samples) - 1))))]
    return pick(50), pick(99)


def http_latencies(path, count):
    connection = http.client.HTTPConnection("127.0.0.1", PORT)
    headers = {"Authorization": "Bearer " + token()}
    connection.request("GET", path, headers=headers)
    first = json.loads(connection.getresponse().read())
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, response.status
    return samples, first["total_count"]


def room_ids():
    rows = subprocess.run(["psql", "-X", "-A", "-t", DB, "-c",
                           f"SELECT p.room_id FROM room_participants p JOIN rooms r ON r.room_id = p.room_id "
                           f"WHERE p.user_id = {USER} AND p.is_active AND r.is_active"],
                          check=True, capture_output=True, text=True).stdout.split()
    return "{" + ",".join(rows) + "}"


def scope(kind):
    # As the server does it: the caller's room ids, fetched first, as an array.
    if kind == "room":
        return f"m.room_id = {ROOM}"
    return f"m.room_id = ANY(CAST('{room_ids()}' AS bigint[]))"


def statements(kind, tsquery, infix):
    terms = "{" + ",".join('"' + t + '"' for t in infix) + "}"
    # CAST rather than '::', which pgbench would read as a variable.
    literal = tsquery.replace("'", "''")
    condition = (f"{scope(kind)} AND NOT m.is_deleted AND m.search_document @@ CAST('{literal}' AS tsquery) "
                 f"AND NOT EXISTS (SELECT 1 FROM unnest(CAST('{terms}' AS text[])) AS t(term) "
                 f"WHERE strpos(lower(m.message_content), t.term) = 0)")
    select = (f"WITH hits AS MATERIALIZED (SELECT m.message_id FROM messages m WHERE {condition}), "
              f"page AS (SELECT message_id FROM hits ORDER BY message_id DESC LIMIT 21 OFFSET 0) "
              f"SELECT (SELECT count(*) FROM hits) AS total_count, m.message_id, m.room_id, "
              f"u.user_name AS sender_name, m.message_content, m.created_at FROM (SELECT 1) AS one "
              f"LEFT JOIN (page JOIN messages m ON m.message_id = page.message_id "
              f"JOIN users u ON u.user_id = m.sender_id) ON true ORDER BY m.message_id DESC;")
    return select


def sql_latencies(select_sql, count):
    with tempfile.TemporaryDirectory() as work:
        script = os.path.join(work, "q.sql")
        with open(script, "w") as f:
            f.write(select_sql + "\n")
        subprocess.run(["pgbench", "-n", "-M", "prepared", "-f", script, "-c", "1", "-t", str(count), "-l",
                        "--log-prefix", os.path.join(work, "log"), DB], check=True, capture_output=True, cwd=work)
        samples = []
        for name in os.listdir(work):
            if name.startswith("log"):
                with open(os.path.join(work, name)) as f:
                    samples += [int(line.split()[2]) / 1000 for line in f if line.strip()]
        return samples[1:]


rows = []
with open(PLANS, "w") as plans:
    for label, (text, tsquery, infix) in QUERIES.items():
        for kind in ("room", "all rooms"):
            path = (f"/chat/rooms/{ROOM}/search/" if kind == "room" else "/chat/search/") + \
                "?query=" + urllib.parse.quote(text)
            select_sql = statements(kind, tsquery, infix)
            probe, total = http_latencies(path, 3)
            n = 200 if statistics.median(probe) < 20 else 40
            http_samples, total = http_latencies(path, n)
            sql_samples = sql_latencies(select_sql, n)
            h50, h99 = percentiles(http_samples)
            s50, s99 = percentiles(sql_samples)
            rows.append((label, kind, total, h50, h99, s50, s99, h50 / s50))
            plan = subprocess.run(["psql", "-X", "-q", DB, "-c", "EXPLAIN (ANALYZE, BUFFERS) " + select_sql],
                                  check=True, capture_output=True, text=True).stdout
            plans.write(f"### {label}, {kind} ({total} hits)\n\n{plan}\n")

print("| query | scope | hits | HTTP p50 ms | HTTP p99 ms | SQL p50 ms | SQL p99 ms | HTTP/SQL p50 |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for label, kind, total, h50, h99, s50, s99, ratio in rows:
    print(f"| {label} | {kind} | {total} | {h50:.2f} | {h99:.2f} | {s50:.2f} | {s99:.2f} | {ratio:.2f} |")
