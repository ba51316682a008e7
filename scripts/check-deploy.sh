#!/usr/bin/env bash
# Validates the Docker Compose deployment in deploy/ without a Docker engine:
#
#   1. docker-compose config: compose.yaml is accepted with the example's variables (empty
#      values filled with placeholders), and refused with the example as it is (empty secrets);
#   2. consistency: deploy/chat.env.example lists every variable deploy/compose.yaml
#      references, and leaves the required ones (the secrets, ${VAR:?...}) empty; build
#      contexts, Dockerfiles and bind-mounted files exist; nginx's upstreams are compose
#      services on the port they listen on, and nginx listens on the port compose publishes;
#   3. nginx -t accepts deploy/nginx.conf, and its directives still include every fixed
#      directive of the test suite's generated configuration (ChatTestKit's NginxProcess).
#
# First run: installs the Python docker-compose (1.29.2, pinned below) into .venv-tools/ in
# the repository (about 30 s) and, as root, nginx from Debian's packages when
# /usr/sbin/nginx (or $NGINX_BINARY) is missing. Later runs take a few seconds.
#
#   bash scripts/check-deploy.sh
#   DEPLOY_DIR=/some/copy/deploy bash scripts/check-deploy.sh    # check another copy
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY_DIR=$(cd "${DEPLOY_DIR:-$ROOT/deploy}" && pwd)
compose_file=$DEPLOY_DIR/compose.yaml
env_example=$DEPLOY_DIR/chat.env.example
nginx_conf=$DEPLOY_DIR/nginx.conf
nginx_test_config=$ROOT/Tests/ChatTestKit/NginxProcess.swift

# docker-compose 1.29.2 is the last Python release (Compose v1). It requires PyYAML<6, and
# PyYAML 5.4.1 (the newest such) has no wheel for Python 3.11 and does not build with
# Cython 3, so it is built first with Cython<3 and no build isolation.
COMPOSE_VERSION=1.29.2
PYYAML_VERSION=5.4.1
VENV=$ROOT/.venv-tools
DC=$VENV/bin/docker-compose
PY=$VENV/bin/python
# (Not named NGINX: nginx reads that environment variable, for inherited sockets.)
nginx_bin=${NGINX_BINARY:-/usr/sbin/nginx}

fail() {
    echo "check-deploy: FAILED: $*" >&2
    exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for file in "$compose_file" "$env_example" "$nginx_conf"; do
    [ -f "$file" ] || fail "$file not found"
done

# ---- tools -------------------------------------------------------------------------------
if [ -x "$DC" ] && [ "$("$DC" version --short 2>/dev/null)" = "$COMPOSE_VERSION" ]; then
    echo "==> docker-compose $COMPOSE_VERSION: $DC"
else
    echo "==> installing docker-compose $COMPOSE_VERSION into .venv-tools/ (first run only)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv failed (on Debian: apt-get install -y python3-venv)"
    if ! {
        "$VENV/bin/pip" install -q 'Cython<3' wheel setuptools &&
            "$VENV/bin/pip" install -q --no-build-isolation "PyYAML==$PYYAML_VERSION" &&
            "$VENV/bin/pip" install -q "docker-compose==$COMPOSE_VERSION"
    } >"$tmp/pip.log" 2>&1; then
        cat "$tmp/pip.log" >&2
        rm -rf "$VENV"
        fail "could not install docker-compose $COMPOSE_VERSION"
    fi
    [ "$("$DC" version --short)" = "$COMPOSE_VERSION" ] || fail "docker-compose in $VENV is not $COMPOSE_VERSION"
fi

if [ -x "$nginx_bin" ]; then
    echo "==> nginx: $nginx_bin ($("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'))"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing nginx (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; } >"$tmp/apt.log" 2>&1 ||
        { cat "$tmp/apt.log" >&2; fail "apt-get install nginx failed"; }
    [ -x "$nginx_bin" ] || fail "nginx installed, but $nginx_bin is missing (set NGINX_BINARY)"
else
    fail "$nginx_bin not found: install nginx (apt-get install -y nginx) or set NGINX_BINARY"
fi

# Checks that neither tool makes, in Python with the venv's PyYAML (which resolves the
# compose file's anchors and merge keys as compose does).
helper() {
    "$PY" - "$@" <<'PY'
import os, re, sys
import yaml

command, args = sys.argv[1], sys.argv[2:]
VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
UPSTREAM_SERVER = re.compile(r"^\s*server\s+([^\s;{]+?)(?::(\d+))?\s*[;\s]")
LISTEN = re.compile(r"^\s*listen\s+(?:[^\s;]*:)?(\d+)\b")

def strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node

def env_keys(path):
    keys = {}
    for line in open(path):
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.rstrip("\n"))
        if match:
            keys[match.group(1)] = match.group(2)
    return keys

def conf_lines(path):
    """nginx.conf lines without comments, whitespace collapsed."""
    lines = []
    for line in open(path):
        line = " ".join(line.split("#", 1)[0].split())
        if line:
            lines.append(line)
    return lines

problems = []

if command == "consistency":
    compose_path, example_path, nginx_path = args
    compose_dir = os.path.dirname(compose_path)
    try:
        compose = yaml.safe_load(open(compose_path))
    except yaml.YAMLError as error:
        sys.exit(f"    {compose_path}: {error}")
    services = compose.get("services") or {}

    # Variables: referenced ones listed in the example; required ones empty there.
    referenced, required = set(), set()
    for text in strings(compose):
        for braced, modifier, bare in VAR.findall(text.replace("$$", "")):
            name = braced or bare
            referenced.add(name)
            if modifier.startswith(":?") or modifier.startswith("?"):
                required.add(name)
    example = env_keys(example_path)
    for name in sorted(referenced - example.keys()):
        problems.append(f"{example_path} does not list {name}, which compose.yaml references")
    for name in sorted(required):
        if example.get(name, "") != "":
            problems.append(f"{example_path}: {name} is a required secret; leave it empty in the example")
    print(f"    compose.yaml references {', '.join(sorted(referenced)) or 'no variables'}"
          f" (required: {', '.join(sorted(required)) or 'none'})")


    # Files compose needs that `docker-compose config` does not look for.
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            path = os.path.join(compose_dir, context, dockerfile)
            if not os.path.isfile(path):
                problems.append(f"service {name}: build file {os.path.normpath(path)} not found")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not os.path.exists(os.path.join(compose_dir, source)):
                problems.append(f"service {name}: bind-mounted {source} not found")

    # nginx.conf against compose.yaml: upstream hosts are services, on the port they listen
    # on; nginx listens on every container port compose publishes for it.
    upstreams = 0
    listens = set()
    for line in open(nginx_path):
        line = line.split("#", 1)[0]
        match = UPSTREAM_SERVER.match(line)
        if match and match.group(1) != "{":
            upstreams += 1
            host, port = match.group(1), match.group(2) or "80"
            if host not in services:
                problems.append(f"nginx.conf upstream server {host}:{port}: no such compose service")
            else:
                environment = services[host].get("environment") or {}
                if isinstance(environment, list):
                    environment = dict(item.split("=", 1) for item in environment if "=" in item)
                listening = str(environment.get("PORT", "8000"))
                if listening.isdigit() and listening != port:
                    problems.append(f"nginx.conf upstream server {host}:{port}: {host} listens on PORT {listening}")
        match = LISTEN.match(line)
        if match:
            listens.add(match.group(1))
    if upstreams == 0:
        problems.append("nginx.conf has no upstream servers")
    for name, service in services.items():
        mounts = [str(v) for v in service.get("volumes") or []]
        if not any(m.split(":")[0].endswith("nginx.conf") for m in mounts):
            continue
        for port in service.get("ports") or []:
            target = str(port).rsplit(":", 1)[-1].split("/")[0]
            if target not in listens:
                problems.append(f"service {name} publishes container port {target}, but nginx.conf does not listen on it")

elif command == "upstream-hosts":
    hosts = set()
    for line in open(args[0]):
        match = UPSTREAM_SERVER.match(line.split("#", 1)[0])
        if match and not re.fullmatch(r"[0-9.]+|\[[0-9a-fA-F:]+\]|unix:.*", match.group(1)):
            hosts.add(match.group(1))
    print(" ".join(sorted(hosts)))

elif command == "same-directives":
    # Every line of NginxProcess.configurationText's template without an interpolation
    # (\(...): paths, ports, worker counts) must be a line of deploy/nginx.conf.
    nginx_path, swift_path = args
    source = open(swift_path).read()
    match = re.search(r'func configurationText\(\).*?return """\n(.*?)\n\s*"""', source, re.S)
    if not match:
        problems.append(f"configurationText's template not found in {swift_path}")
    else:
        ours = set(conf_lines(nginx_path))
        fixed = [" ".join(line.split("#", 1)[0].split()) for line in match.group(1).splitlines()
                 if "\\(" not in line]
        fixed = [line for line in fixed if line]
        missing = [line for line in fixed if line not in ours]
        for line in missing:
            problems.append(f"nginx.conf lacks '{line}' (in {os.path.basename(swift_path)}'s configuration)")
        print(f"    {len(fixed) - len(missing)} of {len(fixed)} fixed lines of the test configuration present")

for problem in dict.fromkeys(problems):
    print("    " + problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# ---- 1. docker-compose config -----------------------------------------------------------
# A clean environment: variables exported in the caller's shell would override the env
# file's values in compose's interpolation.
compose_config() {
    env -i PATH="$PATH" HOME="${HOME:-/root}" LC_ALL=C.UTF-8 \
        "$DC" -f "$compose_file" --env-file "$1" config -q
}
# The example with its empty values (the secrets among them) filled with placeholders.
sed -E 's/^([A-Za-z_][A-Za-z0-9_]*)=$/\1=check-deploy-placeholder-0123456789abcdef/' "$env_example" >"$tmp/chat.env"
echo "==> docker-compose config -q (example's variables, empty ones filled with placeholders)"
compose_config "$tmp/chat.env" >"$tmp/config.log" 2>&1 || {
    cat "$tmp/config.log" >&2
    fail "docker-compose rejects $compose_file"
}
if grep -q '^[A-Za-z_][A-Za-z0-9_]*=$' "$env_example" &&
    grep -q '[$]{[A-Za-z_][A-Za-z0-9_]*:?' "$compose_file"; then
    echo "==> docker-compose config -q with the unedited example must refuse the empty secrets"
    if compose_config "$env_example" >"$tmp/config-empty.log" 2>&1; then
        fail "compose.yaml starts with the example's empty secrets"
    fi
    grep -q 'Missing mandatory value' "$tmp/config-empty.log" || {
        cat "$tmp/config-empty.log" >&2
        fail "docker-compose failed on the unedited example for another reason than the empty secrets"
    }
    sed -n 's/.*: \(set [A-Z_]* in .*\)$/    refused: \1/p' "$tmp/config-empty.log" | head -n 3
fi

# ---- 2. consistency ---------------------------------------------------------------------
echo "==> consistency of compose.yaml, chat.env.example and nginx.conf"
helper consistency "$compose_file" "$env_example" "$nginx_conf" ||
    fail "deploy files disagree (above)"

# ---- 3. nginx -t ------------------------------------------------------------------------
# nginx -t resolves upstream host names, and chat1/chat2 exist only on the compose network.
# Preferred: test the file unchanged, in a private mount namespace whose /etc/hosts (a
# bind-mounted copy, invisible outside it) also maps those names to 127.0.0.1, which stands
# in for Docker's DNS; nothing listens or connects, nginx -t only parses and resolves.
# Without unshare/mount (not root): test a copy whose upstream host names are replaced by
# 127.0.0.1, which checks everything else the same way.
echo "==> nginx -t on deploy/nginx.conf"
cp "$nginx_conf" "$tmp/nginx.conf"
hosts=$(helper upstream-hosts "$nginx_conf")
nginx_test=("$nginx_bin" -t -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/error.log")
{ cat /etc/hosts; [ -z "$hosts" ] || echo "127.0.0.1 $hosts"; } >"$tmp/hosts"
if [ -n "$hosts" ] && [ "$(id -u)" = 0 ] && unshare -m mount --bind "$tmp/hosts" /etc/hosts 2>/dev/null; then
    echo "    unchanged file; $hosts resolved to 127.0.0.1 in a private mount namespace"
    # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
    run=(unshare -m bash -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' bash "$tmp/hosts" "${nginx_test[@]}")
else
    for host in $hosts; do
        sed -i -E "s/^([[:space:]]*server[[:space:]]+)$host(:[0-9]+)?([[:space:];])/\\1127.0.0.1\\2\\3/" "$tmp/nginx.conf"
    done
    [ -z "$hosts" ] || echo "    copy with upstream hosts $hosts replaced by 127.0.0.1"
    run=("${nginx_test[@]}")
fi
"${run[@]}" >"$tmp/nginx-t.log" 2>&1 || {
    cat "$tmp/nginx-t.log" >&2
    fail "nginx -t rejects $nginx_conf"
}
grep -q 'test is successful' "$tmp/nginx-t.log" || {
    cat "$tmp/nginx-t.log" >&2
    fail "nginx -t did not report success"
}

echo "==> nginx.conf keeps the test suite's proxy directives (ChatTestKit NginxProcess)"
[ -f "$nginx_test_config" ] || fail "$nginx_test_config not found"
helper same-directives "$nginx_conf" "$nginx_test_config" ||
    fail "nginx.conf differs from the test suite's nginx configuration (above)"

echo "==> deploy checks passed"
