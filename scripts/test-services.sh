#!/usr/bin/env bash
# What `make test` needs besides Python packages, set up on a fresh machine: PostgreSQL on
# 127.0.0.1:5432 and Redis on 127.0.0.1:6379 running (started when down), and Debian's
# chromium for the console's browser tests (installed when missing; Playwright's own browser
# download does not work on these machines). Run by `make test` and so by CI's .ci/run.
set -euo pipefail

wait_for() {  # wait_for NAME COMMAND...: poll until COMMAND succeeds, at most 60 s
    local name=$1; shift
    for _ in $(seq 1 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "$name did not come up on 127.0.0.1" >&2
    return 1
}

as_root() {  # run as root, through sudo when needed; say what to run when neither works
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "need root for: $*" >&2; return 1
    fi
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    if [ -d /etc/postgresql ]; then
        echo "starting PostgreSQL"
        as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    else
        echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2
        exit 1
    fi
fi
wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null; then
        echo "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    else
        echo "Redis is not installed: apt-get install -y redis-server" >&2
        exit 1
    fi
fi
wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping

if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium for the console's browser tests"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
