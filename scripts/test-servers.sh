#!/usr/bin/env bash
# Object-storage test servers for the Rust tests and PHPUnit (all on 127.0.0.1 only):
#   s3s-fs 0.14.1  on :8014  real SigV4 checks, access key fluxo-ak / secret fluxo-sk,
#                             data dir $FLUXO_TEST_TMP/s3 (bucket folder fluxo-test)
#   moto_server    on :8016  the OSS protocol path (no signature checks: StorageOssTest puts
#                             scripts/oss_verify_proxy.py in front of it), bucket fluxo-oss
#
#   scripts/test-servers.sh install   cargo-installs s3s-fs (once, 4-10 min) and pip-installs moto[server], oss2
#   scripts/test-servers.sh start     starts both (idempotent), waits until they answer, writes $FLUXO_TEST_TMP/env
#   scripts/test-servers.sh stop      stops both (by pid file)
#   scripts/test-servers.sh env       prints the env file:  eval "$(scripts/test-servers.sh env)"
#   scripts/test-servers.sh status    says whether each one runs and answers
#
# FLUXO_TEST_TMP (default /tmp/fluxo-test-servers) holds pid files, logs, the s3s-fs data and the env file.
# FLUXO_PYTHON (default python3) runs moto and pip.
set -euo pipefail

TMP_DIR="${FLUXO_TEST_TMP:-/tmp/fluxo-test-servers}"
TOOLS="${HOME}/.cache/fluxo/tools"
S3S_FS="${TOOLS}/bin/s3s-fs"
S3S_VERSION="0.14.1"
PY="${FLUXO_PYTHON:-python3}"

HOST=127.0.0.1
S3_PORT=8014
OSS_PORT=8016
S3_AK=fluxo-ak
S3_SK=fluxo-sk
S3_BUCKET=fluxo-test
OSS_BUCKET=fluxo-oss

S3_DATA="${TMP_DIR}/s3"
S3_PID="${TMP_DIR}/s3s-fs.pid"
OSS_PID="${TMP_DIR}/moto.pid"
ENV_FILE="${TMP_DIR}/env"
START_TIMEOUT=30

log() { printf 'test-servers: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- install ---------------------------------------------------------------

py_modules_ok() {
    "$PY" -c 'import moto.server, flask, flask_cors, oss2' >/dev/null 2>&1
}

install_tools() {
    if [[ -x "$S3S_FS" ]]; then
        log "s3s-fs present: $S3S_FS"
    else
        command -v cargo >/dev/null || die "cargo not found: install Rust first"
        log "installing s3s-fs ${S3S_VERSION} into ${TOOLS} (takes several minutes)"
        mkdir -p "$TOOLS"
        CARGO_TARGET_DIR="${HOME}/.cache/fluxo/tools-target" \
            cargo install "s3s-fs@${S3S_VERSION}" --features binary --locked --root "$TOOLS"
        [[ -x "$S3S_FS" ]] || die "cargo install finished but $S3S_FS is missing"
    fi
    if py_modules_ok; then
        log "python modules present: moto[server], oss2"
    else
        log "installing python modules: moto[server] oss2"
        # oss2 pinned: scripts/oss_verify_proxy.py calls its string-to-sign,
        # which is not public API.
        "$PY" -m pip install --quiet 'moto[server]' 'oss2==2.19.1' \
            || "$PY" -m pip install --quiet --break-system-packages 'moto[server]' 'oss2==2.19.1'
        py_modules_ok || die "moto[server] / oss2 still not importable by $PY"
    fi
}

# --- helpers ---------------------------------------------------------------

# HTTP status of a plain GET (000 when nothing answers).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 3 "$1" 2>/dev/null || true
}

answers() {
    local code
    code="$(http_code "$1")"
    [[ -n "$code" && "$code" != "000" ]]
}

# pid from the file when that process is alive and is the expected program.
live_pid() {
    local file="$1" pattern="$2" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    echo "$pid"
}

s3_running() { live_pid "$S3_PID" s3s-fs >/dev/null && answers "http://${HOST}:${S3_PORT}/"; }
oss_running() { live_pid "$OSS_PID" moto >/dev/null && answers "http://${HOST}:${OSS_PORT}/"; }

stop_one() {
    local file="$1" pattern="$2" name="$3" pid i
    if pid="$(live_pid "$file" "$pattern")"; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$file"
}

write_env() {
    local tmp="${ENV_FILE}.tmp.$$"
    {
        printf 'export FLUXO_TEST_TMP=%q\n' "$TMP_DIR"
        printf 'export FLUXO_TEST_S3_ENDPOINT=%q\n' "http://${HOST}:${S3_PORT}"
        printf 'export FLUXO_TEST_S3_BUCKET=%q\n' "$S3_BUCKET"
        printf 'export FLUXO_TEST_S3_AK=%q\n' "$S3_AK"
        printf 'export FLUXO_TEST_S3_SK=%q\n' "$S3_SK"
        printf 'export FLUXO_TEST_S3_DATA=%q\n' "$S3_DATA"
        printf 'export FLUXO_TEST_S3S_FS=%q\n' "$S3S_FS"
        printf 'export FLUXO_TEST_OSS_ENDPOINT=%q\n' "http://${HOST}:${OSS_PORT}"
        printf 'export FLUXO_TEST_OSS_BUCKET=%q\n' "$OSS_BUCKET"
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

wait_until_answers() {
    local url="$1" name="$2" pidfile="$3" logfile="$4" deadline
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if answers "$url"; then
            return 0
        fi
        # kill -0, not live_pid: until the child has exec'd, its command
        # line is still this script's, which the pattern would not match.
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "$name exited while starting; last lines of $logfile:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    log "$name did not answer on $url within ${START_TIMEOUT}s; last lines of $logfile:"
    tail -n 20 "$logfile" >&2 || true
    return 1
}

# --- start / stop ----------------------------------------------------------

start_servers() {
    command -v curl >/dev/null || die "curl not found"
    mkdir -p "$TMP_DIR"
    TMP_DIR="$(cd "$TMP_DIR" && pwd -P)"
    S3_DATA="${TMP_DIR}/s3"
    S3_PID="${TMP_DIR}/s3s-fs.pid"
    OSS_PID="${TMP_DIR}/moto.pid"
    ENV_FILE="${TMP_DIR}/env"

    if [[ ! -x "$S3S_FS" ]] || ! py_modules_ok; then
        log "tools missing: running install first"
        install_tools
    fi

    if s3_running; then
        log "s3s-fs already running (pid $(cat "$S3_PID")) on ${HOST}:${S3_PORT}"
    else
        stop_one "$S3_PID" s3s-fs s3s-fs
        answers "http://${HOST}:${S3_PORT}/" && die "port ${S3_PORT} is taken by another process"
        # fresh data dir on every (re)start: objects of earlier runs mean nothing
        rm -rf "$S3_DATA"
        mkdir -p "${S3_DATA}/${S3_BUCKET}"
        nohup "$S3S_FS" --host "$HOST" --port "$S3_PORT" --access-key "$S3_AK" --secret-key "$S3_SK" \
            "$S3_DATA" </dev/null >"${TMP_DIR}/s3s-fs.log" 2>&1 &
        echo $! >"$S3_PID"
        wait_until_answers "http://${HOST}:${S3_PORT}/" s3s-fs "$S3_PID" "${TMP_DIR}/s3s-fs.log" \
            || { stop_one "$S3_PID" s3s-fs s3s-fs; exit 1; }
        log "s3s-fs running (pid $(cat "$S3_PID")) on ${HOST}:${S3_PORT}, data ${S3_DATA}"
    fi

    if oss_running; then
        log "moto_server already running (pid $(cat "$OSS_PID")) on ${HOST}:${OSS_PORT}"
    else
        stop_one "$OSS_PID" moto moto_server
        answers "http://${HOST}:${OSS_PORT}/" && die "port ${OSS_PORT} is taken by another process"
        nohup "$PY" -m moto.server -H "$HOST" -p "$OSS_PORT" </dev/null >"${TMP_DIR}/moto.log" 2>&1 &
        echo $! >"$OSS_PID"
        wait_until_answers "http://${HOST}:${OSS_PORT}/" moto_server "$OSS_PID" "${TMP_DIR}/moto.log" \
            || { stop_one "$OSS_PID" moto moto_server; exit 1; }
        log "moto_server running (pid $(cat "$OSS_PID")) on ${HOST}:${OSS_PORT}"
    fi

    # bucket on moto: 200 when created, 409 when it already exists
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT "http://${HOST}:${OSS_PORT}/${OSS_BUCKET}" || true)"
    case "$code" in
        200 | 409) ;;
        *) die "creating bucket ${OSS_BUCKET} on moto answered HTTP ${code}" ;;
    esac
    mkdir -p "${S3_DATA}/${S3_BUCKET}"

    write_env
    log "env written to ${ENV_FILE}"
}

stop_servers() {
    stop_one "$S3_PID" s3s-fs s3s-fs
    stop_one "$OSS_PID" moto moto_server
}

status_servers() {
    local rc=0
    if s3_running; then echo "s3s-fs: running (pid $(cat "$S3_PID")) http://${HOST}:${S3_PORT}"; else echo "s3s-fs: not running"; rc=1; fi
    if oss_running; then echo "moto_server: running (pid $(cat "$OSS_PID")) http://${HOST}:${OSS_PORT}"; else echo "moto_server: not running"; rc=1; fi
    return "$rc"
}

case "${1:-}" in
    install) install_tools ;;
    start) start_servers ;;
    stop) stop_servers ;;
    env)
        [[ -f "$ENV_FILE" ]] || die "no env file at ${ENV_FILE}: run '$0 start' first"
        cat "$ENV_FILE"
        ;;
    status) status_servers ;;
    *)
        echo "usage: $0 install|start|stop|env|status" >&2
        exit 2
        ;;
esac
