#!/usr/bin/env python3
"""The capacity table of docs/scaling.md, computed from the committed benchmark figures.

Reads the newest Benchmarks/runs/*all-scenarios*.md (by the run's own timestamp, not the file
name) for the send, fan-out and socket-memory figures, and the newest
Benchmarks/capacity/results-*.json (Benchmarks/capacity/measure.py; by the "date" inside it,
the run's UTC time) for history pages, search, room lists, idle-socket CPU and the wake-up
cost, then sizes example workloads with the assumptions below.

  scripts/capacity.py           print the table (Markdown)
  scripts/capacity.py --write   replace the table in docs/scaling.md (between the markers)
  scripts/capacity.py --check   exit 1 when docs/scaling.md differs from what the figures give
"""
import glob, json, math, os, re, statistics, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOC = os.path.join(ROOT, "docs", "scaling.md")
BEGIN, END = "<!-- capacity:begin -->", "<!-- capacity:end -->"

# ----------------------------------------------------------------------------- assumptions
# Machines: an instance is this machine's size; PostgreSQL machines are sized in cores.
INSTANCE_CORES = 2
INSTANCE_MEMORY_GIB = 8          # memory an instance may fill with sockets
TARGET_UTILISATION = 0.6         # plan every machine to run at most this busy at the peak
REPLICA_CORES = 8                # one read replica
PRIMARY_SIZES = [2, 4, 8, 16, 32, 64, 96, 128]   # cores of the machines to choose from
DB_POOL_SIZE = 10                # the server's default request pool (DB_POOL_SIZE)
DEDICATED_CONNECTIONS = 2        # per instance, outside the pool: LISTEN and the notifier (send lanes lease from the pool)
DELIVERY_POOL = max(2, DB_POOL_SIZE // 2)  # per instance: delivery's reads, generic plans (Application+build.swift)
# WAL replay on a replica, as a share of the primary's CPU for the same writes. Not measured
# here: an assumption (replay applies WAL without parsing, planning or checking constraints).
REPLAY_SHARE_OF_WRITE_CPU = 0.3

# What a user does at the peak hour. Reads per online user per minute, by kind; the kinds are
# mixes of the measured scenarios (weights add up to 1).
WORKLOAD_DEFAULTS = dict(
    online_share=0.2,            # users connected at the peak
    sockets_per_online_user=1.5,  # room sockets and user streams
    recipients_per_message=5,    # online sockets that get each message (fan-out)
    history_pages_per_min=2.0,
    room_lists_per_min=1.0,
    searches_per_min=0.1,
)
HISTORY_MIX = {"history_page1": 0.5, "history_before_id": 0.4, "history_page1_big_room": 0.1}
SEARCH_MIX = {"search_room_rare": 0.3, "search_room_common": 0.25, "search_room_korean": 0.2,
              "search_all_rare": 0.2, "search_all_common": 0.05}
WORKLOADS = [
    dict(name="10k users, 50 msg/s", users=10_000, messages_per_s=50),
    dict(name="100k users, 500 msg/s", users=100_000, messages_per_s=500),
    dict(name="100k users, 500 msg/s, rooms of 50 online", users=100_000, messages_per_s=500,
         recipients_per_message=50),
    dict(name="1M users, 3,000 msg/s", users=1_000_000, messages_per_s=3_000),
    dict(name="1M users, 10,000 msg/s", users=1_000_000, messages_per_s=10_000),
]

# ----------------------------------------------------------------------------- parsing


def num(text):
    text = text.strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def parse_run_file(path):
    """Sections ('## label (timestamp, ...)') with their tables ('### title'), rows as dicts."""
    sections, cur, sub, header = [], None, None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"## (\S+)\s+\((\d{4}-\d\d-\d\dT[\d:]+)[^,]*,\s*([^,]+),\s*(\d+) cores", line)
            if m:
                cur = {"label": m.group(1), "time": m.group(2), "cpu": m.group(3).strip(), "tables": {}, "lines": []}
                sections.append(cur)
                sub = header = None
                continue
            if cur is None:
                continue
            cur["lines"].append(line)
            if line.startswith("### "):
                sub, header = line[4:].split(" (")[0].strip(), None
                cur["tables"].setdefault(sub, [])
                continue
            if sub and line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if header is None:
                    header = cells
                elif not set("".join(cells)) <= set("-: "):
                    cur["tables"][sub].append(dict(zip(header, cells)))
            elif not line.startswith("|"):
                header = None if not line.strip() else header
    return sections


def newest_run():
    files = glob.glob(os.path.join(ROOT, "Benchmarks", "runs", "*all-scenarios*.md"))
    if not files:
        raise SystemExit("no Benchmarks/runs/*all-scenarios*.md")
    parsed = [(max(s["time"] for s in secs), f, secs) for f in files if (secs := parse_run_file(f))]
    return max(parsed)


def newest_capacity():
    files = glob.glob(os.path.join(ROOT, "Benchmarks", "capacity", "results-*.json"))
    if not files:
        raise SystemExit("no Benchmarks/capacity/results-*.json: run Benchmarks/capacity/measure.py")
    docs = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            docs.append((json.load(fh), f))
    return max(docs, key=lambda d: d[0]["date"])   # the run's own UTC timestamp (ISO 8601, sortable)


def figures():
    when, run_path, sections = newest_run()
    cap, cap_path = newest_capacity()
    fig = {"run_file": os.path.relpath(run_path, ROOT), "run_time": when,
           "run_cpu": sections[0]["cpu"], "capacity_file": os.path.relpath(cap_path, ROOT), "capacity": cap}

    def rows(title, pattern):
        out = []
        for s in sections:
            for r in s["tables"].get(title, []):
                key = r.get("phase") or r.get("side")
                if key and re.fullmatch(pattern, key):
                    out.append(r)
        return out

    g1 = "G1 REST send throughput"
    srv, hot, base = rows(g1, r"server\d+"), rows(g1, r"server_hot\d+"), rows(g1, r"baseline\d+")
    if not srv or not base:
        raise SystemExit(f"{fig['run_file']}: no G1 table")
    med = lambda rs, k: statistics.median(num(r[k]) for r in rs)
    fig["send_server_ms"], fig["send_pg_ms"] = med(srv, "server ms CPU/op"), med(srv, "PG ms CPU/op")
    fig["send_rate"], fig["send_per_flush"] = med(srv, "ops/s"), med(srv, "ops per WAL flush")
    fig["hot_server_ms"], fig["hot_pg_ms"] = med(hot, "server ms CPU/op"), med(hot, "PG ms CPU/op")
    fig["hot_rate"], fig["hot_per_flush"] = med(hot, "ops/s"), med(hot, "ops per WAL flush")
    fig["insert_tps"], fig["insert_pg_ms"] = med(base, "ops/s"), med(base, "PG ms CPU/op")
    fig["insert_per_flush"] = med(base, "ops per WAL flush")
    fig["g1_phases"] = len(srv)
    ntx, nsep = rows(g1, r"baseline_notify_tx\d+"), rows(g1, r"baseline_notify_sep\d+")
    fig["notify_tx_tps"] = med(ntx, "ops/s") if ntx else None
    fig["notify_tx_per_flush"] = med(ntx, "ops per WAL flush") if ntx else None
    fig["notify_sep_tps"] = med(nsep, "ops/s") if nsep else None
    with open(run_path, encoding="utf-8") as f:
        fs = [float(x) for x in re.findall(r"fdatasync (\d+) us", f.read())]
    fig["fdatasync_us"] = statistics.median(fs) if fs else None

    g2 = [r for r in rows("G2 WebSocket fan-out", r"server")]
    ok = [r for r in g2 if num(r["delivered %"]) >= 99.9 and num(r["order viol"]) == 0 and num(r["p99 ms"]) <= 100]
    if not ok:
        raise SystemExit(f"{fig['run_file']}: no G2 step meets the ok rule")
    best = max(ok, key=lambda r: num(r["deliveries/s"]))
    cores = [float(x) for x in best["cores side/pg/cli/other"].split("/")]
    fig["g2_deliveries"], fig["g2_msgs"] = num(best["deliveries/s"]), num(best["msgs/s posted"])
    fig["g2_layout"] = best["layout"]
    fig["delivery_server_us"] = num(best["side CPU us/delivery"])
    fig["delivery_pg_us"] = cores[1] / fig["g2_deliveries"] * 1e6

    g4 = rows("G4 idle WebSocket memory", r"server")
    with open(run_path, encoding="utf-8") as f:
        m = re.findall(r"G4 server slope between N=\d+ and N=\d+: ([\d.]+) KB/conn", f.read())
        slope = statistics.median(float(x) for x in m) if m else None
    fig["socket_kb"] = slope if slope else statistics.median(num(r["dRSS/N KB"]) for r in g4)

    res = cap["results"]
    rt = (cap.get("realtime") or {}).get("summary", {})
    fig["reads"] = {k: (v["server_cpu_ms_per_request"], v["pg_cpu_ms_per_request"], v["requests_per_s"], v["what"])
                    for k, v in res.items()}
    fig["idle_socket_server_us"] = rt.get("idle_socket", {}).get("server_us_per_socket_per_s")
    fig["idle_socket_pg_us"] = rt.get("idle_socket", {}).get("pg_us_per_socket_per_s")
    # RSS growth means something only in the first repetition (later ones reuse freed memory).
    idle_runs = (cap.get("realtime") or {}).get("runs", {}).get("idle_sockets", [])
    fig["idle_socket_kb_measured"] = idle_runs[0]["rss_kb_per_socket"] if idle_runs else None
    wd = rt.get("wakeup_and_delivery", {})
    fig["wake_server_ms"] = max(0.0, wd.get("server_cpu_ms", 0.0))
    fig["wake_pg_ms"] = max(0.0, wd.get("pg_cpu_ms", 0.0))
    fig["rt_send"] = rt.get("send_without_socket", {})
    return fig


# ----------------------------------------------------------------------------- model


def mix_cost(fig, mix):
    srv = sum(w * fig["reads"][k][0] for k, w in mix.items() if k in fig["reads"])
    pg = sum(w * fig["reads"][k][1] for k, w in mix.items() if k in fig["reads"])
    total = sum(w for k, w in mix.items() if k in fig["reads"]) or 1
    return srv / total, pg / total


def distinct_instances(instances, recipients):
    """Expected number of instances holding at least one of `recipients` sockets placed at random."""
    if instances <= 1:
        return 1.0
    return instances * (1 - (1 - 1 / instances) ** recipients)


def size(fig, w):
    p = dict(WORKLOAD_DEFAULTS, **w)
    online = p["users"] * p["online_share"]
    sockets = online * p["sockets_per_online_user"]
    m, f = p["messages_per_s"], p["recipients_per_message"]
    hist_srv, hist_pg = mix_cost(fig, HISTORY_MIX)
    srch_srv, srch_pg = mix_cost(fig, SEARCH_MIX)
    list_srv, list_pg = fig["reads"]["room_list"][:2]
    hist_s, list_s, srch_s = (online * p[k] / 60 for k in ("history_pages_per_min", "room_lists_per_min",
                                                           "searches_per_min"))
    # The delivery's own server cost is G2's per-delivery figure; the wake-up (per instance and
    # batch holding the room) is what the measured "wake-up and one delivery" adds beyond it.
    deliv_srv_ms = fig["delivery_server_us"] / 1000
    wake_srv_ms = max(0.0, fig["wake_server_ms"] - deliv_srv_ms)
    idle_srv = (fig["idle_socket_server_us"] or 0) / 1e6
    idle_pg = (fig["idle_socket_pg_us"] or 0) / 1e6
    read_srv = hist_s * hist_srv + list_s * list_srv + srch_s * srch_srv   # ms per s
    read_pg = hist_s * hist_pg + list_s * list_pg + srch_s * srch_pg
    instances = 1
    for _ in range(50):
        wakes = distinct_instances(instances, f)
        srv_ms = m * (fig["send_server_ms"] + wakes * wake_srv_ms + f * deliv_srv_ms) + read_srv
        srv_cores = srv_ms / 1000 + sockets * idle_srv
        by_cpu = math.ceil(srv_cores / (INSTANCE_CORES * TARGET_UTILISATION))
        by_mem = math.ceil(sockets * fig["socket_kb"] / (INSTANCE_MEMORY_GIB * 1024 * 1024))
        nxt = max(1, by_cpu, by_mem)
        if nxt == instances:
            break
        instances = nxt
    wakes = distinct_instances(instances, f)
    write_pg = m * fig["send_pg_ms"] / 1000
    primary = (write_pg + m * (wakes * fig["wake_pg_ms"] + f * fig["delivery_pg_us"] / 1000) / 1000
               + sockets * idle_pg)
    replica_load = read_pg / 1000
    replicas = 0
    if replica_load > 0:
        per_replica = REPLICA_CORES * TARGET_UTILISATION - write_pg * REPLAY_SHARE_OF_WRITE_CPU
        replicas = math.ceil(replica_load / per_replica) if per_replica > 0 else None
    need = primary / TARGET_UTILISATION
    primary_size = next((c for c in PRIMARY_SIZES if c >= need), None)
    return {"online": online, "sockets": sockets, "deliveries": m * f, "reads": hist_s + list_s + srch_s,
            "instances": instances, "by_mem": by_mem, "srv_cores": srv_cores, "primary_cores": primary,
            "primary_size": primary_size, "replica_cores": replica_load, "replicas": replicas,
            "primary_no_replica": primary + replica_load, "wakes": wakes,
            "connections": instances * (DB_POOL_SIZE + DELIVERY_POOL + DEDICATED_CONNECTIONS), "p": p}


# ----------------------------------------------------------------------------- output


def f3(x, unit=""):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}{unit}"
    if x >= 10:
        return f"{x:.1f}{unit}"
    if x >= 1:
        return f"{x:.2f}{unit}"
    return f"{x:.3f}{unit}"


def render(fig):
    cap = fig["capacity"]
    out = []
    w = out.append
    w(f"Generated by `scripts/capacity.py` from `{fig['run_file']}` (run of {fig['run_time']}, {fig['run_cpu']}, "
      f"2 cores) and `{fig['capacity_file']}` (commit {cap['commit']}, {cap['date']}, {cap['machine']['cpu']}, "
      f"median of {cap['reps']} runs; {cap.get('build', 'release build')}"
      f"{'; ' + cap['conditions'] if cap.get('conditions') else ''}). Do not edit by hand: change the figures or the assumptions at the top "
      "of the script and run `scripts/capacity.py --write`.")
    w("")
    w("**Cost of one operation** (CPU time, all cores counted; server = one `chat-server` process, "
      "PostgreSQL = the postmaster and all its processes):")
    w("")
    w("| operation | server CPU | PostgreSQL CPU | measured rate | source |")
    w("|---|---:|---:|---:|---|")
    w(f"| send (`POST .../messages/`, 50 rooms, 32 connections) | {fig['send_server_ms']:.3f} ms | "
      f"{fig['send_pg_ms']:.3f} ms | {fig['send_rate']:,.0f}/s | G1, median of {fig['g1_phases']} phases |")
    w(f"| send, one hot room | {fig['hot_server_ms']:.3f} ms | {fig['hot_pg_ms']:.3f} ms | "
      f"{fig['hot_rate']:,.0f}/s | G1 `server_hot` |")
    rs = fig["rt_send"]
    if rs:
        w(f"| send, 2,000 rooms, 8 connections | {rs['server_cpu_ms_per_send']:.3f} ms | "
          f"{rs['pg_cpu_ms_per_send']:.3f} ms | {rs['sends_per_s']:,.0f}/s | capacity, no sockets |")
    w(f"| wake-up of one instance for one room, with one delivery | {fig['wake_server_ms']:.3f} ms | "
      f"{fig['wake_pg_ms']:.3f} ms | | capacity: sends with minus without a subscriber |")
    w(f"| delivery (one frame to one socket, room of 1,000) | {fig['delivery_server_us']:.1f} µs | "
      f"{fig['delivery_pg_us']:.1f} µs | {fig['g2_deliveries']:,.0f}/s | G2 {fig['g2_layout']}, best step "
      "within p99 ≤ 100 ms |")
    if fig["idle_socket_server_us"] is not None:
        w(f"| idle socket, per second | {fig['idle_socket_server_us']:.2f} µs | {fig['idle_socket_pg_us']:.2f} µs | "
          f"| capacity, {cap['realtime']['summary']['idle_socket']['sockets']:,} sockets |")
    w(f"| idle socket, memory | {fig['socket_kb']:.1f} KB | | | G4 slope (capacity run: "
      f"{f3(fig['idle_socket_kb_measured'])} KB) |")
    for k, (srv, pg, rate, what) in fig["reads"].items():
        w(f"| `{k}`: {what} | {srv:.3f} ms | {pg:.3f} ms | {rate:,.0f}/s | capacity |")
    w("")
    w("**Limits of one primary** (from the same G1 run; they move with the disk and the lock, not with cores):")
    w("")
    ins_cores = fig["insert_tps"] * fig["insert_pg_ms"] / 1000
    w(f"- Plain single-row INSERT, 32 clients: {fig['insert_tps']:,.0f} commits/s at "
      f"{fig['insert_per_flush']:.1f} commits per WAL flush, {fig['insert_pg_ms']:.3f} ms PG CPU each "
      f"({ins_cores:.2f} cores busy: waits, not CPU, bound it); fdatasync of 8 kB: "
      f"{fig['fdatasync_us']:.0f} µs.")
    if fig["fdatasync_us"]:
        flushes = 1e6 / fig["fdatasync_us"]
        w(f"- WAL flushes back to back: at most ~{flushes:,.0f}/s on this disk. The send path commits "
          f"{fig['send_per_flush']:.1f} sends per flush ({fig['hot_per_flush']:.1f} in one hot room), so the flush "
          f"alone caps one primary near {flushes * fig['send_per_flush']:,.0f} sends/s; its CPU "
          f"({fig['send_pg_ms']:.3f} ms per send) caps it at {1000 / fig['send_pg_ms']:,.0f} sends/s per core.")
    if fig["notify_tx_tps"]:
        w(f"- INSERT with `pg_notify` in the same transaction: {fig['notify_tx_tps']:,.0f}/s "
          f"({fig['notify_tx_tps'] / fig['insert_tps']:.2f} of plain INSERT) at {fig['notify_tx_per_flush']:.1f} "
          f"commits per flush: the notify lock serialises them. Batched, each such commit carries "
          f"{fig['send_per_flush']:.1f} sends: ~{fig['notify_tx_tps'] * fig['send_per_flush']:,.0f} sends/s "
          "before the lock is the limit again (more as batches grow).")
    w("")
    w("**Example workloads.** Assumptions: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                       for k, v in WORKLOAD_DEFAULTS.items())
      + f"; history mix {HISTORY_MIX}; search mix {SEARCH_MIX}; instances of {INSTANCE_CORES} cores and "
      f"{INSTANCE_MEMORY_GIB} GiB for sockets, replicas of {REPLICA_CORES} cores, every machine at most "
      f"{TARGET_UTILISATION:.0%} busy; replay on a replica costs {REPLAY_SHARE_OF_WRITE_CPU:.0%} of the "
      "primary's write CPU (assumed). Primary = writes, wake-up reads and presence (they stay on the "
      "primary); replicas = history, room lists, search.")
    w("")
    w("| workload | online users | sockets | deliveries/s | reads/s | instances | instances holding a room | "
      "primary CPU (cores) | primary size | replicas | primary CPU with no replica | pooled connections |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for wl in WORKLOADS:
        r = size(fig, wl)
        name = wl["name"]
        w(f"| {name} | {r['online']:,.0f} | {r['sockets']:,.0f} | {r['deliveries']:,.0f} | {r['reads']:,.0f} | "
          f"{r['instances']}{' (memory)' if r['by_mem'] == r['instances'] and r['by_mem'] > 1 else ''} | "
          f"{r['wakes']:.1f} | {r['primary_cores']:.2f} | "
          f"{str(r['primary_size']) + ' cores' if r['primary_size'] else 'more than one primary'} | "
          f"{r['replicas'] if r['replicas'] is not None else '-'} | {r['primary_no_replica']:.2f} | "
          f"{r['connections']:,} |")
    return "\n".join(out) + "\n"


def main():
    text = render(figures())
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode not in ("", "--write", "--check"):
        raise SystemExit(__doc__)
    if not mode:
        sys.stdout.write(text)
        return
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    i, j = doc.find(BEGIN), doc.find(END)
    if i < 0 or j < i:
        raise SystemExit(f"{DOC}: markers {BEGIN} / {END} not found")
    new = doc[:i + len(BEGIN)] + "\n" + text + doc[j:]
    if mode == "--check":
        if new != doc:
            print("docs/scaling.md: the capacity table differs from what the figures give; "
                  "run scripts/capacity.py --write", file=sys.stderr)
            sys.exit(1)
        return
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    main()
