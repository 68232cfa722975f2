#!/usr/bin/env bash
# Build the deployment images without a Docker engine and run the service from them.
#
#   bash bench/image_check.sh [cpu|cuda|all]        (default: cpu)
#
# For each image: build docker/Dockerfile.<flavour> unchanged except for build arguments, with
# buildah (vfs storage, chroot isolation, host network) on a stand-in for python:3.11-slim-bookworm
# made with debootstrap; then, from the built image:
#   - the image holds no .git, .venv, data, test or bench files; which torch it got (printed;
#     the CPU image must hold none: `import torch` fails in it, and its ONNX graph is listed);
#   - the service (the image's CMD, on a free port) with a data directory mounted, until /readyz;
#     register two products and classify two shelf photos over HTTP (real grocery-store photos);
#     RSS of the server when ready; with `all`, the two images' scores must agree (< 2e-3);
#   - the image's own HEALTHCHECK command passes while it serves and fails once it is stopped;
#   - the server process runs as the image's non-root USER;
#   - `retailklip migrate` on a scratch PostgreSQL database, then two services on that database
#     (shared blob directory, own shard directories, as in docker-compose.yml) see each other's
#     writes: register on one, classify on the other, both ways.
# Prints a table (image size, build time, start-up to ready, results). Everything it starts is
# stopped and removed on exit; built images too unless KEEP_IMAGES=1 (vfs keeps every image as a
# full copy of its file system: several GB each).
#
# Needs root, curl, python3, buildah and debootstrap (apt-get install buildah debootstrap), and
# for the PostgreSQL step createdb/dropdb/psql and a server that trusts PGUSER on PGHOST:PGPORT.
#
# Settings (environment):
#   TORCH_SOURCE   auto (default): the Dockerfile's default wheel index when it answers, else
#                  "host"; "index": always the Dockerfile's default; "host": pip's default index
#                  plus the host pip's own find-links / extra index / constraint files, mounted
#                  read-only into the build at the same paths (same torch as the host's venv).
#   PG=0           skip the PostgreSQL step. PGHOST/PGPORT/PGUSER: 127.0.0.1/5432/postgres.
#   KEEP_IMAGES=1  keep the built images (the stand-in base image is always kept).
#   REUSE_IMAGES=1 check an image kept by an earlier run (KEEP_IMAGES=1) instead of building it.
#   REBUILD_BASE=1 rebuild the stand-in base image even if it exists.
#   READY_TIMEOUT_S (600), SYNC_TIMEOUT_S (120), BUILD_TIMEOUT_S (3600): bounded waits (generous:
#                  on a machine whose CPUs are busy, start-up took 14 s one time, 243 s another).
#   RETAILKLIP_GROCERY_DIR: the data set (default ../shared/data/grocery-store).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLAVOURS=${1:-cpu}
[[ $FLAVOURS == all ]] && FLAVOURS="cpu cuda"
for f in $FLAVOURS; do
    [[ $f == cpu || $f == cuda ]] || { echo "usage: $0 [cpu|cuda|all]" >&2; exit 2; }
done

GROCERY=${RETAILKLIP_GROCERY_DIR:-$ROOT/../shared/data/grocery-store}
ICONIC=$GROCERY/iconic-images-and-descriptions
BANANA_ICONIC=$ICONIC/Fruit/Banana/Banana_Iconic.jpg
BANANA_PHOTO=$GROCERY/test/Fruit/Banana/Banana_001.jpg
OATLY_ICONIC=$ICONIC/Packages/Oatghurt/Oatly-Natural-Oatghurt/Oatly-Natural-Oatghurt_Iconic.jpg
OATLY_PHOTO=$GROCERY/test/Packages/Oatghurt/Oatly-Natural-Oatghurt/Oatly-Natural-Oatghurt_001.jpg

# vfs: the only storage driver that works without kernel overlay support in this environment.
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
BASE_IMAGE=localhost/retailklip-standin-python:3.11-slim-bookworm
TORCH_SOURCE=${TORCH_SOURCE:-auto}
PG=${PG:-1}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER
PG_DB=retailklip_image_check_$$
KEEP_IMAGES=${KEEP_IMAGES:-0}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-600}
SYNC_TIMEOUT_S=${SYNC_TIMEOUT_S:-120}
BUILD_TIMEOUT_S=${BUILD_TIMEOUT_S:-3600}

WORK=$(mktemp -d /tmp/retailklip-image-check.XXXXXX)
CONTAINERS=()    # buildah working containers to remove
SERVICES=()      # running services to stop, as PGID:PORT
IMAGES=()        # built images to remove (unless KEEP_IMAGES=1)
PG_CREATED=0
ROWS=()          # result table rows

log() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
    set +e  # best effort: every step runs even if one fails
    local svc ctr image
    for svc in "${SERVICES[@]}"; do stop_service "$svc"; done
    for ctr in "${CONTAINERS[@]}"; do buildah rm "$ctr" >/dev/null 2>&1 || true; done
    if [[ $KEEP_IMAGES != 1 ]]; then
        for image in "${IMAGES[@]}"; do buildah rmi "$image" >/dev/null 2>&1 || true; done
    fi
    if [[ $PG_CREATED == 1 ]]; then dropdb --if-exists "$PG_DB" || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in buildah debootstrap curl python3; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install buildah debootstrap curl)"
done
for photo in "$BANANA_ICONIC" "$BANANA_PHOTO" "$OATLY_ICONIC" "$OATLY_PHOTO"; do
    [[ -f $photo ]] || fail "photo not found: $photo (set RETAILKLIP_GROCERY_DIR)"
done

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# json FILE EXPR: evaluate a Python expression on the JSON document `d` in FILE.
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# stop_service PGID:PORT: SIGTERM to the server alone first, as `docker stop` does to a
# container's main process (uvicorn shuts down cleanly and writes its shards); then to the process
# group (buildah run); SIGKILL after 30 s more. Sets STOPPED_CLEANLY (1 if the server exited on
# the first SIGTERM).
stop_service() {
    local pgid=${1%%:*} port=${1#*:} pid svc
    local -a left=()
    for svc in "${SERVICES[@]}"; do [[ $svc == "$1" ]] || left+=("$svc"); done
    SERVICES=("${left[@]}")
    STOPPED_CLEANLY=0
    pid=$(listener_pid "$port")
    # only a listener in the session setsid gave this service: never someone else's process
    if [[ -n $pid && $(ps -o sid= -p "$pid" | tr -d ' ') == "$pgid" ]]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 60); do
            kill -0 "$pid" 2>/dev/null || { STOPPED_CLEANLY=1; break; }
            sleep 0.5
        done
    fi
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for _ in $(seq 60); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

# pid of the process listening on 127.0.0.1:PORT (the server itself, not buildah).
listener_pid() {
    { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; } || true
}

# start_service NAME CTR PORT DATA_DIR [buildah run options...]: the image's CMD, in its own
# process group, with --host 127.0.0.1 --port PORT instead of 0.0.0.0:8000 (the container shares
# the host's network: 8000 may be taken, and a check need not listen on every interface).
# Sets STARTED_PGID.
start_service() {
    local name=$1 ctr=$2 port=$3 data=$4
    shift 4
    mkdir -p "$data"
    chown "$IMAGE_UID:$IMAGE_GID" "$data"  # the image's non-root user writes here
    local -a cmd
    mapfile -d '' -t cmd < <(python3 -c '
import json, sys
cmd = json.loads(sys.argv[1])
for flag, value in (("--host", "127.0.0.1"), ("--port", sys.argv[2])):
    if flag in cmd:
        cmd[cmd.index(flag) + 1] = value
sys.stdout.write("\0".join(cmd) + "\0")' "$IMAGE_CMD" "$port")
    setsid buildah run --isolation chroot --network host -v "$data:/data" \
        -e "RETAILKLIP_PORT=$port" "$@" "$ctr" -- "${cmd[@]}" >"$WORK/$name.log" 2>&1 &
    STARTED_PGID=$!
    SERVICES+=("$STARTED_PGID:$port")
}

# wait_ready NAME PGID PORT: poll /readyz until 200 (bounded); sets READY_S.
wait_ready() {
    local name=$1 pgid=$2 port=$3 start=$SECONDS
    until curl -sf -o "$WORK/$name.readyz.json" "http://127.0.0.1:$port/readyz"; do
        if ! kill -0 "$pgid" 2>/dev/null; then
            tail -30 "$WORK/$name.log" >&2
            fail "$name exited before it was ready"
        fi
        if ((SECONDS - start > READY_TIMEOUT_S)); then
            tail -30 "$WORK/$name.log" >&2
            fail "$name not ready after ${READY_TIMEOUT_S}s"
        fi
        sleep 1
    done
    READY_S=$((SECONDS - start))
}

# register PORT SKU NAME PHOTO: POST /products, expect 201.
register() {
    local code
    code=$(curl -sS -o "$WORK/register.json" -w '%{http_code}' -F "sku=$2" -F "name=$3" \
        -F "images=@$4" "http://127.0.0.1:$1/products")
    [[ $code == 201 ]] || fail "POST /products $2 on :$1 answered $code: $(cat "$WORK/register.json")"
}

# classify PORT PHOTO: POST /classify, print the best match's sku ("-" when none).
classify() {
    local code
    code=$(curl -sS -o "$WORK/classify.json" -w '%{http_code}' -F "image=@$2" -F top_k=2 \
        "http://127.0.0.1:$1/classify")
    [[ $code == 200 ]] || fail "POST /classify on :$1 answered $code: $(cat "$WORK/classify.json")"
    json "$WORK/classify.json" 'd["matches"][0]["sku"] if d["matches"] else "-"'
}

# run_healthcheck CTR PORT: the image's HEALTHCHECK test, run in the image as Docker would.
run_healthcheck() {
    local -a test
    mapfile -d '' -t test < <(python3 -c '
import json, sys
test = json.loads(sys.argv[1])["Test"]
if test[0] == "CMD-SHELL":
    test = ["/bin/sh", "-c", test[1]]
elif test[0] == "CMD":
    test = test[1:]
else:
    sys.exit("unexpected healthcheck test: %r" % test)
sys.stdout.write("\0".join(test) + "\0")' "$IMAGE_HEALTHCHECK")
    timeout 60 buildah run --isolation chroot --network host -e "RETAILKLIP_PORT=$2" "$1" -- \
        "${test[@]}" >"$WORK/healthcheck.log" 2>&1
}

# --------------------------------------------------------------------------------------------
# stand-in base image: Debian bookworm (minbase) + Debian's Python 3.11, in place of
# python:3.11-slim-bookworm, which cannot be pulled here
# --------------------------------------------------------------------------------------------

make_base_image() {
    if [[ ${REBUILD_BASE:-0} != 1 ]] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
        log "stand-in base image $BASE_IMAGE exists (REBUILD_BASE=1 rebuilds it)"
        return
    fi
    log "making the stand-in base image $BASE_IMAGE (debootstrap bookworm)"
    local rootfs=$WORK/rootfs ctr mnt start=$SECONDS
    buildah rmi "$BASE_IMAGE" >/dev/null 2>&1 || true
    # python-is-python3: `python` on PATH, as in the official image; ca-certificates: for pip.
    debootstrap --variant=minbase \
        --include=python3.11,python3.11-venv,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    ctr=$(buildah from scratch)
    CONTAINERS+=("$ctr")
    mnt=$(buildah mount "$ctr")
    cp -a "$rootfs/." "$mnt/"
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 \
        --label org.opencontainers.image.description="local stand-in for python:3.11-slim-bookworm" \
        "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    echo "stand-in base image made in $((SECONDS - start))s" >&2
}

# --------------------------------------------------------------------------------------------
# where torch comes from
# --------------------------------------------------------------------------------------------

# Sets TORCH_ARGS (build arguments and mounts for `buildah bud`) and TORCH_FROM (for the table).
torch_source() {
    local dockerfile=$1 default_index
    default_index=$(sed -n 's/^ARG TORCH_INDEX_URL=//p' "$dockerfile")
    local source=$TORCH_SOURCE
    if [[ $source == auto ]]; then
        if curl -sfI --max-time 15 -o /dev/null "$default_index/torch/"; then
            source=index
        else
            source=host
        fi
    fi
    TORCH_ARGS=()
    if [[ $source == index ]]; then
        TORCH_FROM="the Dockerfile's default index"
        return
    fi
    [[ $source == host ]] || fail "TORCH_SOURCE must be auto, index or host"
    # The host's pip settings (config files and PIP_* variables), e.g. a local wheel directory
    # and local file:// indexes holding the torch the host's own venv was installed from.
    local find_links="" extra_index="" constraint="" key value path
    while IFS='=' read -r key value; do
        value=${value#\'}
        value=${value%\'}
        case $key in
        *.find-links) find_links="$find_links $value" ;;
        *.extra-index-url) extra_index="$extra_index $value" ;;
        *.constraint) constraint="$constraint $value" ;;
        esac
    done < <(python3 -m pip config list 2>/dev/null)
    find_links=$(tr ' ' '\n' <<<"$find_links" | awk 'NF && !seen[$0]++' | xargs)
    extra_index=$(tr ' ' '\n' <<<"$extra_index" | awk 'NF && !seen[$0]++' | xargs)
    constraint=$(tr ' ' '\n' <<<"$constraint" | awk 'NF && !seen[$0]++' | xargs)
    # Empty TORCH_INDEX_URL: torch and torchvision from pip's default index (+ the settings below).
    TORCH_ARGS+=(--build-arg "TORCH_INDEX_URL=")
    TORCH_ARGS+=(--build-arg "PIP_FIND_LINKS=$find_links")
    TORCH_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index")
    TORCH_ARGS+=(--build-arg "PIP_CONSTRAINT=$constraint")
    # Local paths are mounted read-only at the same path, so the same settings work in the build.
    # A file:// index URL (ROOT/simple) is mounted from its parent: its pages link ../../files/.
    for value in $find_links $constraint; do
        path=${value#file://}
        [[ -e $path ]] && TORCH_ARGS+=(-v "$path:$path:ro")
    done
    for value in $extra_index; do
        [[ $value == file://* ]] || continue
        path=$(dirname "${value#file://}")
        [[ -e $path ]] && TORCH_ARGS+=(-v "$path:$path:ro")
    done
    TORCH_FROM="pip's default index + host pip settings"
}

# --------------------------------------------------------------------------------------------
# build and check one image
# --------------------------------------------------------------------------------------------

# build_image FLAVOUR DOCKERFILE IMAGE: sets BUILD_S (wall time).
build_image() {
    local flavour=$1 dockerfile=$2 image=$3 start=$SECONDS
    torch_source "$dockerfile"
    log "building $image from docker/Dockerfile.$flavour (torch from $TORCH_FROM); log: $WORK/build-$flavour.log"
    # --format docker: the OCI format has no HEALTHCHECK. The host CA bundle: for pip over TLS.
    # No layer cache (vfs would store a full copy of the file system per instruction).
    if ! timeout "$BUILD_TIMEOUT_S" buildah bud --format docker --isolation chroot --network host \
        --layers=false --pull=never -f "$dockerfile" -t "$image" \
        --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
        "${TORCH_ARGS[@]}" \
        -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        "$ROOT" >"$WORK/build-$flavour.log" 2>&1; then
        tail -40 "$WORK/build-$flavour.log" >&2
        fail "building docker/Dockerfile.$flavour failed"
    fi
    BUILD_S=$((SECONDS - start))
    echo "build: ${BUILD_S}s; the build printed: $(grep -m1 '^torch ' "$WORK/build-$flavour.log")" >&2
}

check_flavour() {
    local flavour=$1
    local dockerfile=$ROOT/docker/Dockerfile.$flavour
    local image=localhost/retailklip:$flavour-check
    [[ -f $dockerfile ]] || fail "$dockerfile not found"
    df -h "$ROOT" | tail -1 >&2

    IMAGES+=("$image")
    local build_s
    if [[ ${REUSE_IMAGES:-0} == 1 ]] && buildah inspect --type image "$image" >/dev/null 2>&1; then
        log "reusing $image (REUSE_IMAGES=1): not built by this run"
        build_s="(reused)"
    else
        build_image "$flavour" "$dockerfile" "$image"
        build_s=${BUILD_S}s
    fi
    local size  # as buildah reports it (uncompressed), e.g. "6.29 GB"
    size=$(buildah images --json "$image" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["size"])')

    # The image's own configuration (Docker format: CMD, HEALTHCHECK, USER).
    buildah inspect --type image "$image" >"$WORK/inspect-$flavour.json"
    IMAGE_CMD=$(json "$WORK/inspect-$flavour.json" 'json.dumps(d["Docker"]["config"]["Cmd"])')
    IMAGE_HEALTHCHECK=$(json "$WORK/inspect-$flavour.json" 'json.dumps(d["Docker"]["config"].get("Healthcheck"))')
    local user
    user=$(json "$WORK/inspect-$flavour.json" 'd["Docker"]["config"].get("User") or "root"')
    IMAGE_UID=${user%%:*}
    IMAGE_GID=${user#*:}
    [[ $IMAGE_UID =~ ^[0-9]+$ && $IMAGE_UID != 0 ]] || fail "image USER is '$user', expected a numeric non-root uid"
    [[ $IMAGE_HEALTHCHECK != null ]] || fail "the image has no HEALTHCHECK"

    # One working container for every check: with vfs each container is a full copy of the
    # image, so the services below share its (unchanged) root file system; each gets its own
    # /data directory.
    local ctr mnt
    ctr=$(buildah from --pull-never "$image")
    CONTAINERS+=("$ctr")

    log "$flavour: image contents"
    mnt=$(buildah mount "$ctr")
    local unwanted
    # VCS, environments, local state, caches; then the repository's own tests, bench and docs
    # (by file name, unique enough to this project). /data must hold empty directories only.
    unwanted=$(cd "$mnt" && find . -xdev \( -name .git -o -name .venv -o -name .env \
        -o -name .pytest_cache -o -name .ruff_cache -o -name '*.db' -o -name '*.sqlite*' \
        -o -name test_compose_file.py -o -name test_e2e.py -o -name image_check.sh \
        -o -name service_bench.py -o -name DEPLOYMENT.md \
        -o -name TRAINING.md -o -name docker-compose.yml -o -name haproxy.cfg \) -print)
    [[ -d $mnt/data ]] && unwanted+=$(find "$mnt/data" -type f -printf ' /data/%P')
    for dir in tests bench docs runs .ci; do
        [[ -e $mnt/opt/venv/lib/python3.11/site-packages/$dir ]] && unwanted+=" site-packages/$dir"
    done
    [[ -d $mnt/src ]] && unwanted+=" /src (the builder's source tree)"
    local venv_size
    venv_size=$(du -sh "$mnt/opt/venv" | cut -f1)
    buildah umount "$ctr" >/dev/null
    [[ -z $unwanted ]] || fail "the image holds files it should not: $unwanted"
    local present=""
    for p in .git .venv .env data runs tests bench docs; do [[ -e $ROOT/$p ]] && present+="$p "; done
    echo "clean: none of [${present% }] (present in the build context) reached the image; /opt/venv $venv_size" >&2

    local torch_info
    if [[ $flavour == cpu ]]; then
        # The slim image serves the baked ONNX graph: PyTorch must not be there at all.
        if buildah run --isolation chroot "$ctr" -- python -c "import torch" >/dev/null 2>&1; then
            fail "import torch succeeds in the CPU image; it must serve without PyTorch"
        fi
        torch_info="none (import torch fails)"
        local graphs
        graphs=$(buildah run --isolation chroot "$ctr" -- sh -c 'ls /opt/onnx; du -sh /opt/onnx | cut -f1' | xargs)
        echo "ONNX graphs in the image: $graphs" >&2
    else
        torch_info=$(buildah run --isolation chroot "$ctr" -- python -c \
            "import torch, torchvision; print(torch.__version__, '/ torchvision', torchvision.__version__, '/', 'CUDA ' + torch.version.cuda + ' build' if torch.version.cuda else 'CPU-only build')")
    fi
    echo "torch in the image: $torch_info" >&2

    # ---- the service on its default SQLite database, data directory mounted ----------------
    log "$flavour: service from the image (SQLite in the mounted /data)"
    local port
    port=$(free_port)
    start_service "$flavour-sqlite" "$ctr" "$port" "$WORK/$flavour-data" -e RETAILKLIP_DEVICE=cpu
    local pgid=$STARTED_PGID
    wait_ready "$flavour-sqlite" "$pgid" "$port"
    local ready_s=$READY_S
    local device
    device=$(json "$WORK/$flavour-sqlite.readyz.json" 'd["device"]')
    echo "ready after ${ready_s}s on $device: $(cat "$WORK/$flavour-sqlite.readyz.json")" >&2

    local pid uid
    pid=$(listener_pid "$port")
    [[ -n $pid ]] || fail "no process listens on :$port"
    uid=$(ps -o uid= -p "$pid" | tr -d ' ')
    [[ $uid == "$IMAGE_UID" ]] || fail "the server runs as uid $uid, not the image's USER $IMAGE_UID"
    echo "server pid $pid runs as uid $uid ($(ps -o comm= -p "$pid"))" >&2
    local rss_mb
    rss_mb=$(($(ps -o rss= -p "$pid" | tr -d ' ') / 1024))
    echo "RSS when ready: ${rss_mb} MB" >&2

    register "$port" banana Banana "$BANANA_ICONIC"
    register "$port" oatly-oatghurt "Oatly Natural Oatghurt" "$OATLY_ICONIC"
    local sku
    sku=$(classify "$port" "$BANANA_PHOTO")
    [[ $sku == banana ]] || fail "the banana photo was classified as '$sku'"
    echo "classify Banana_001.jpg: $(cat "$WORK/classify.json")" >&2
    cp "$WORK/classify.json" "$WORK/scores-$flavour-banana.json"
    sku=$(classify "$port" "$OATLY_PHOTO")
    [[ $sku == oatly-oatghurt ]] || fail "the Oatly photo was classified as '$sku'"
    cp "$WORK/classify.json" "$WORK/scores-$flavour-oatly.json"
    [[ -n $(find "$WORK/$flavour-data/blobs" -type f) ]] || fail "no blob written under the mounted /data"

    run_healthcheck "$ctr" "$port" || { cat "$WORK/healthcheck.log" >&2; fail "HEALTHCHECK failed while serving"; }
    stop_service "$pgid:$port"
    # what `docker stop` relies on: the server (the image's CMD, exec form) ends on SIGTERM
    if [[ $STOPPED_CLEANLY != 1 ]] || ! grep -q 'Finished server process' "$WORK/$flavour-sqlite.log"; then
        tail -20 "$WORK/$flavour-sqlite.log" >&2
        fail "the server did not shut down cleanly on SIGTERM"
    fi
    echo "SIGTERM: the server shut down cleanly" >&2
    if run_healthcheck "$ctr" "$port"; then fail "HEALTHCHECK passed with the service stopped"; fi
    echo "HEALTHCHECK: passes while serving, fails once stopped" >&2

    # ---- PostgreSQL: migrate from the image, then two replicas on one database ---------------
    local pg_result="skipped (PG=0)"
    if [[ $PG == 1 ]]; then
        log "$flavour: retailklip migrate + two services on PostgreSQL database $PG_DB"
        createdb "$PG_DB"
        PG_CREATED=1
        local url="postgresql+psycopg://$PGUSER@$PGHOST:$PGPORT/$PG_DB"
        buildah run --isolation chroot --network host -v "$WORK/$flavour-data:/data" \
            -e "RETAILKLIP_DATABASE_URL=$url" "$ctr" -- retailklip migrate \
            >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; fail "retailklip migrate failed"; }
        local head
        head=$(psql -d "$PG_DB" -tAc 'SELECT version_num FROM alembic_version')
        [[ -n $head ]] || fail "no alembic_version after migrate"
        echo "migrated to $head" >&2

        # As in docker-compose.yml: the schema belongs to migrate, the blob directory is shared,
        # each replica has its own /data (and so its own shard cache).
        local blobs=$WORK/$flavour-pg-blobs port_a port_b pgid_a pgid_b
        mkdir -p "$blobs" && chown "$IMAGE_UID:$IMAGE_GID" "$blobs"
        local -a pg_env=(-e "RETAILKLIP_DATABASE_URL=$url" -e RETAILKLIP_AUTO_MIGRATE=false
            -e RETAILKLIP_DEVICE=cpu -e RETAILKLIP_BLOB_DIR=/blobs -e RETAILKLIP_SYNC_INTERVAL_S=2
            -v "$blobs:/blobs")
        port_a=$(free_port)
        start_service "$flavour-pg-a" "$ctr" "$port_a" "$WORK/$flavour-pg-a" "${pg_env[@]}"
        pgid_a=$STARTED_PGID
        port_b=$(free_port)
        [[ $port_b != "$port_a" ]] || port_b=$(free_port)
        start_service "$flavour-pg-b" "$ctr" "$port_b" "$WORK/$flavour-pg-b" "${pg_env[@]}"
        pgid_b=$STARTED_PGID
        # started together, so B's wait counts from when A was ready: report both from launch
        start=$SECONDS
        wait_ready "$flavour-pg-a" "$pgid_a" "$port_a"
        wait_ready "$flavour-pg-b" "$pgid_b" "$port_b"
        local ready_ab=$((SECONDS - start))

        # written on A, seen by B; then written on B, seen by A (bounded polling)
        local seen_ab seen_ba
        register "$port_a" banana Banana "$BANANA_ICONIC"
        start=$SECONDS
        until [[ $(classify "$port_b" "$BANANA_PHOTO") == banana ]]; do
            ((SECONDS - start < SYNC_TIMEOUT_S)) || fail "replica B never saw the product registered on A"
            sleep 1
        done
        seen_ab=$((SECONDS - start))
        register "$port_b" oatly-oatghurt "Oatly Natural Oatghurt" "$OATLY_ICONIC"
        start=$SECONDS
        until [[ $(classify "$port_a" "$OATLY_PHOTO") == oatly-oatghurt ]]; do
            ((SECONDS - start < SYNC_TIMEOUT_S)) || fail "replica A never saw the product registered on B"
            sleep 1
        done
        seen_ba=$((SECONDS - start))
        echo "both replicas ready after ${ready_ab}s; A->B seen after ${seen_ab}s, B->A after ${seen_ba}s" >&2
        stop_service "$pgid_a:$port_a"
        stop_service "$pgid_b:$port_b"
        dropdb "$PG_DB"
        PG_CREATED=0
        pg_result="migrate ok; both ready ${ready_ab}s; A->B ${seen_ab}s, B->A ${seen_ba}s"
    fi

    ROWS+=("$flavour|$size|$build_s|${ready_s}s|${rss_mb} MB|$torch_info|$pg_result")

    # Free the disk before the next image (vfs).
    buildah rm "$ctr" >/dev/null
    if [[ $KEEP_IMAGES != 1 ]]; then buildah rmi "$image" >/dev/null; fi
}

# --------------------------------------------------------------------------------------------

make_base_image
for flavour in $FLAVOURS; do check_flavour "$flavour"; done

# Same answers from both images: the slim image's ONNX graph against the torch image.
if [[ -f $WORK/scores-cpu-banana.json && -f $WORK/scores-cuda-banana.json ]]; then
    log "same answers: the CPU image (no torch) against the CUDA image (torch), both on the CPU"
    python3 - "$WORK" <<'PY' || fail "the two images answer differently"
import json, sys
work = sys.argv[1]
worst = 0.0
for photo in ("banana", "oatly"):
    a, b = (json.load(open(f"{work}/scores-{f}-{photo}.json"))["matches"] for f in ("cpu", "cuda"))
    assert [m["sku"] for m in a] == [m["sku"] for m in b], (photo, a, b)
    for x, y in zip(a, b):
        worst = max(worst, abs(x["score"] - y["score"]))
    print(photo, [(m["sku"], round(m["score"], 5)) for m in a], [(m["sku"], round(m["score"], 5)) for m in b])
print(f"largest score difference {worst:.2e}")
assert worst < 2e-3
PY
fi

log "results (built on $(nproc) CPUs, storage $(buildah info --format "{{.store.GraphDriverName}}" 2>/dev/null || echo "$STORAGE_DRIVER"), base $BASE_IMAGE)"
# A Markdown table, ready for docs/DEPLOYMENT.md.
printf '%s\n' "image|size|build|start-up to ready|RSS when ready|torch|migrate + two replicas" "${ROWS[@]}" |
    python3 -c '
import sys
rows = [line.rstrip("\n").split("|") for line in sys.stdin]
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
def show(row):
    print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")
show(rows[0])
show(["-" * w for w in widths])
for row in rows[1:]:
    show(row)'
echo "PASS: every check above held"
