#!/usr/bin/env bash
# Run the project's own docker-compose.yml (with the CPU override) for real, with podman and
# podman-compose, and check what a deployment relies on:
#
#   bash bench/compose_check.sh
#
#   1. `up -d --scale api=2`: postgres becomes healthy, `migrate` runs once and exits 0, two `api`
#      replicas become healthy, `lb` (HAProxy) answers over HTTPS on RETAILKLIP_HTTPS_PORT with
#      a certificate this script makes (the compose secret RETAILKLIP_TLS_PEM), and plain HTTP on
#      RETAILKLIP_HTTP_PORT answers only a redirect to it;
#   2. a product registered through the load balancer is classified through it, and both
#      replicas hold its vectors (each replica's /readyz, asked from inside the network);
#   3. one replica stopped: the load balancer keeps answering (every request of a burst);
#   4. `down` (volumes kept) and `up` again: the product is still there and still classified.
# Prints each step and what it printed; everything it starts is removed at the end (`down -v`).
#
# Images: RETAILKLIP_IMAGE (default localhost/retailklip:cpu; tagged from
# localhost/retailklip:cpu-check, which `KEEP_IMAGES=1 bash bench/image_check.sh` leaves, when
# missing), and stand-ins for postgres:16 and haproxy:3.0 built from bench/standins/ (Debian's
# PostgreSQL 15 and HAProxy 2.6 on the debootstrap base image_check.sh makes), since neither can
# be pulled here.
#
# Needs root, podman (runc as its runtime here: crun refuses this host's hybrid cgroups), and
# podman-compose >= 1.1 (`!reset` in docker-compose.cpu.yml; Debian's 1.0.3 cannot read it):
# PODMAN_COMPOSE names the command (default: podman-compose on PATH). Without systemd, podman runs
# no health checks by itself, so this script runs them (`podman healthcheck run`) every 3 s, as
# Docker's daemon would.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PODMAN_COMPOSE=${PODMAN_COMPOSE:-podman-compose}
GROCERY=${RETAILKLIP_GROCERY_DIR:-$ROOT/../shared/data/grocery-store}
ICONIC=$GROCERY/iconic-images-and-descriptions
BANANA_ICONIC=$ICONIC/Fruit/Banana/Banana_Iconic.jpg
BANANA_PHOTO=$GROCERY/test/Fruit/Banana/Banana_001.jpg
OATLY_ICONIC=$ICONIC/Packages/Oatghurt/Oatly-Natural-Oatghurt/Oatly-Natural-Oatghurt_Iconic.jpg
BASE_IMAGE=localhost/retailklip-standin-python:3.11-slim-bookworm
READY_TIMEOUT_S=${READY_TIMEOUT_S:-600}

WORK=$(mktemp -d /tmp/retailklip-compose-check.XXXXXX)
export RETAILKLIP_IMAGE=${RETAILKLIP_IMAGE:-localhost/retailklip:cpu}
export POSTGRES_PASSWORD=check-$$-$RANDOM
KEY=check-admin-$RANDOM
export RETAILKLIP_API_KEYS="$KEY:admin"
export RETAILKLIP_MODELS_DIR=$WORK/models
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RETAILKLIP_HTTP_PORT=$(free_port)
RETAILKLIP_HTTPS_PORT=$(free_port)
export RETAILKLIP_HTTP_PORT RETAILKLIP_HTTPS_PORT
LB=https://127.0.0.1:$RETAILKLIP_HTTPS_PORT
# The certificate the load balancer presents, for 127.0.0.1; curl trusts exactly it.
CERT=$WORK/cert.pem
export RETAILKLIP_TLS_PEM=$WORK/retailklip.pem
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$WORK/key.pem" -out "$CERT" \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
cat "$CERT" "$WORK/key.pem" >"$RETAILKLIP_TLS_PEM"
CURL=(curl --cacert "$CERT")
COMPOSE=("$PODMAN_COMPOSE" -f docker-compose.yml -f docker-compose.cpu.yml)
mkdir -p "$RETAILKLIP_MODELS_DIR"
HEALTH_PID=

log() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

project_containers() { podman ps -a --filter label=io.podman.compose.project=retailklip --format '{{.Names}}'; }

cleanup() {
    set +e
    [[ -n $HEALTH_PID ]] && kill "$HEALTH_PID" 2>/dev/null
    "${COMPOSE[@]}" down -v >"$WORK/down-v.log" 2>&1
    local -a left
    mapfile -t left < <(project_containers)
    ((${#left[@]} == 0)) || podman rm -f -v "${left[@]}" >/dev/null 2>&1
    podman volume rm retailklip_pgdata retailklip_blobs >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted by a signal" >&2; exit 130' INT TERM

for tool in podman "$PODMAN_COMPOSE" curl python3 openssl; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done

# ---- images ----------------------------------------------------------------------------------
if ! podman image exists "$RETAILKLIP_IMAGE"; then
    podman image exists localhost/retailklip:cpu-check \
        || fail "no $RETAILKLIP_IMAGE: run KEEP_IMAGES=1 bash bench/image_check.sh cpu first"
    podman tag localhost/retailklip:cpu-check "$RETAILKLIP_IMAGE"
fi
for standin in postgres:16 haproxy:3.0; do
    name=${standin%%:*}
    if ! podman image exists "docker.io/library/$standin"; then
        log "building the stand-in $standin from bench/standins/$name.Dockerfile"
        podman build --isolation chroot --network host --build-arg "BASE=$BASE_IMAGE" \
            -f "bench/standins/$name.Dockerfile" -t "docker.io/library/$standin" bench/standins \
            >"$WORK/build-$name.log" 2>&1 || { tail -20 "$WORK/build-$name.log" >&2; fail "stand-in $standin"; }
    fi
done
echo "images: $RETAILKLIP_IMAGE ($(podman image inspect --format '{{.Size}}' "$RETAILKLIP_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')), postgres:16 and haproxy:3.0 stand-ins" >&2

# ---- health checks, as Docker's daemon runs them -----------------------------------------------
run_health_checks() {
    while true; do
        for ctr in $(podman ps --filter label=io.podman.compose.project=retailklip --format '{{.Names}}'); do
            podman healthcheck run "$ctr" >/dev/null 2>&1 || true
        done
        sleep 3
    done
}
run_health_checks &
HEALTH_PID=$!

health() { podman inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null || echo none; }
api_containers() { podman ps --filter label=io.podman.compose.project=retailklip \
    --filter label=io.podman.compose.service=api --format '{{.Names}}' | sort; }

# up_and_wait LABEL: the compose file's services in its depends_on order, each `up -d --no-deps`,
# waiting for the condition the file declares before the next: postgres healthy, migrate exited
# 0 (service_completed_successfully), two api replicas healthy, then lb answering. podman 4.3.1
# cannot do this by itself: podman-compose skips `condition: service_healthy` before podman 4.6
# (no `podman wait --condition=healthy`), and podman 4.3.1 refuses to start a container whose
# `--requires` chain is transitive (api -> migrate -> postgres: "not found in input list").
up_and_wait() {
    local label=$1 start=$SECONDS
    log "$label: up, in the order depends_on declares"
    stage "$label" postgres
    wait_for "postgres healthy" postgres_healthy
    stage "$label" migrate
    wait_for "migrate exited" migrate_exited
    local code
    code=$(podman inspect --format '{{.State.ExitCode}}' retailklip_migrate_1)
    [[ $code == 0 ]] || { podman logs retailklip_migrate_1 >&2; fail "$label: migrate exited $code"; }
    stage "$label" --scale api=2 api
    wait_for "two api replicas healthy" two_api_healthy
    stage "$label" lb
    wait_for "the load balancer answering /readyz" lb_answers
    UP_S=$((SECONDS - start))
    local migrate
    migrate=$(podman ps -a --filter label=io.podman.compose.service=migrate --format '{{.Names}} {{.Status}}')
    [[ $(wc -l <<<"$migrate") == 1 ]] || fail "$label: more than one migrate container: $migrate"
    echo "$label: postgres $(health retailklip_postgres_1); migrate: $migrate, exit 0, last line: $(podman logs retailklip_migrate_1 2>&1 | tail -1)" >&2
    echo "$label: api: $(for c in $(api_containers); do printf '%s %s; ' "$c" "$(health "$c")"; done)lb answers /readyz; all up after ${UP_S}s" >&2
}

stage() {
    local label=$1
    shift
    "${COMPOSE[@]}" up -d --no-deps "$@" </dev/null >>"$WORK/up-$label.log" 2>&1 \
        || { tail -30 "$WORK/up-$label.log" >&2; fail "$label: up $* failed"; }
}

# wait_for WHAT CHECK: run the function CHECK every second until it succeeds (bounded).
wait_for() {
    local start=$SECONDS
    until "$2"; do
        ((SECONDS - start < READY_TIMEOUT_S)) || { podman ps -a >&2; fail "not $1 after ${READY_TIMEOUT_S}s"; }
        sleep 1
    done
    echo "  $1 after $((SECONDS - start))s" >&2
}

healthy_api() {
    local n=0 ctr
    for ctr in $(api_containers); do [[ $(health "$ctr") == healthy ]] && n=$((n + 1)); done
    echo "$n"
}
postgres_healthy() { [[ $(health retailklip_postgres_1) == healthy ]]; }
migrate_exited() { [[ $(podman inspect --format '{{.State.Status}}' retailklip_migrate_1) == exited ]]; }
two_api_healthy() { (($(healthy_api) == 2)); }
lb_answers() { "${CURL[@]}" -sf -o /dev/null "$LB/readyz"; }

# classify PHOTO: the best sku through the load balancer.
classify() {
    "${CURL[@]}" -sS -o "$WORK/classify.json" -w '%{http_code}' -H "X-API-Key: $KEY" \
        -F "image=@$1" -F top_k=2 "$LB/classify" >"$WORK/classify.code"
    [[ $(cat "$WORK/classify.code") == 200 ]] || { echo "-"; return; }
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["matches"][0]["sku"] if d["matches"] else "-")' "$WORK/classify.json"
}

register() {
    local code
    code=$("${CURL[@]}" -sS -o "$WORK/register.json" -w '%{http_code}' -H "X-API-Key: $KEY" \
        -F "sku=$1" -F "name=$2" -F "images=@$3" "$LB/products")
    [[ $code == 201 ]] || fail "POST /products $1 through the LB answered $code: $(cat "$WORK/register.json")"
}

# vectors_on CTR: the replica's own /readyz index_vectors, asked from inside the lb container.
vectors_on() {
    podman exec retailklip_lb_1 python3 -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(f"http://{sys.argv[1]}:8000/readyz", timeout=5))["index_vectors"])' "$1"
}

# ---- 1. up ----------------------------------------------------------------------------------
up_and_wait first

# Plain HTTP: a redirect to the same path over HTTPS, never an answer from the API.
plain=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H "X-API-Key: $KEY" \
    "http://127.0.0.1:$RETAILKLIP_HTTP_PORT/products?limit=1")
[[ $plain == "308 $LB/products?limit=1" ]] || fail "plain HTTP answered '$plain', not a redirect to $LB"
echo "plain HTTP: $plain" >&2

# ---- 2. register and classify through the load balancer --------------------------------------
log "register two products through the LB, classify a shelf photo through it"
register banana Banana "$BANANA_ICONIC"
register oatly-oatghurt "Oatly Natural Oatghurt" "$OATLY_ICONIC"
sku=$(classify "$BANANA_PHOTO")
[[ $sku == banana ]] || fail "Banana_001.jpg through the LB: '$sku' ($(cat "$WORK/classify.json"))"
echo "classify through the LB: $(cat "$WORK/classify.json")" >&2
for ctr in $(api_containers); do
    start=$SECONDS
    until [[ $(vectors_on "$ctr") -ge 2 ]]; do
        ((SECONDS - start < 30)) || fail "$ctr never held the registered vectors"
        sleep 1
    done
    echo "$ctr holds $(vectors_on "$ctr") vectors" >&2
done

# ---- 3. one replica stopped ------------------------------------------------------------------
victim=$(api_containers | head -1)
log "stop $victim; the LB keeps answering"
podman stop -t 30 "$victim" >/dev/null
answered=0
for _ in $(seq 20); do
    [[ $(classify "$BANANA_PHOTO") == banana ]] && answered=$((answered + 1))
done
((answered == 20)) || fail "with $victim stopped, $answered of 20 classifications answered"
echo "with $victim stopped: 20 of 20 classifications through the LB answered banana" >&2

# ---- 4. down (volumes kept) and up again -----------------------------------------------------
log "down (volumes kept), up again"
"${COMPOSE[@]}" down >"$WORK/down.log" 2>&1 || { tail -20 "$WORK/down.log" >&2; fail "down failed"; }
mapfile -t left < <(project_containers)
if ((${#left[@]} > 0)); then
    # podman-compose's down tears down the replicas the file declares (one per service): the
    # second one `--scale` started survives it. Removed here, and reported.
    echo "after down, still there: ${left[*]} (podman-compose down does not know --scale); removing it" >&2
    podman rm -f "${left[@]}" >/dev/null 2>&1
fi
echo "after down: $(project_containers | wc -l) containers; volumes kept: $(podman volume ls --format '{{.Name}}' | grep '^retailklip_' | xargs)" >&2
up_and_wait second
sku=$(classify "$BANANA_PHOTO")
[[ $sku == banana ]] || fail "after down/up, Banana_001.jpg: '$sku'"
products=$("${CURL[@]}" -sf -H "X-API-Key: $KEY" "$LB/products" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(sorted(p["sku"] for p in d["items"]))')
echo "after down/up: products $products; Banana_001.jpg -> $sku" >&2
echo "PASS: every check above held"
