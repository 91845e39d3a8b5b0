#!/usr/bin/env bash
# Build the CPU image for real and run the pipeline inside it, on a machine with neither a docker
# daemon nor Docker Hub (a CI runner, a sandbox): run by hand, as root, from anywhere in the repo.
#
#   apt-get install podman buildah debootstrap     # Debian/Ubuntu
#   docker/verify.sh                    # torch from a local CPU wheel (found in $PIP_FIND_LINKS or /opt/wheels)
#   docker/verify.sh --torch-index https://download.pytorch.org/whl/cpu    # torch from an index instead
#
# 1. base: `debootstrap --variant=minbase` of Debian bookworm (python3 3.11, venv, pip, CA
#    certificates), imported with `podman import`, used by its digest (docker/Dockerfile's BASE_IMAGE);
# 2. docker/build.sh --tool buildah: `buildah bud`, chroot isolation, vfs storage (no overlay,
#    no cgroups, no user namespaces needed);
# 3. inside the built image, as its user 1000 (`buildah run --isolation chroot`; `podman run` needs
#    cgroups): `pseudovad --help`, `import components` + compiling both pipelines, the Kubeflow
#    drift guard (passes for this commit, refuses another), and a tiny synthesize → extract →
#    train → evaluate with MLflow tracking on;
# 4. prints the image size (uncompressed, and compressed as a registry stores it) and the build
#    time, and writes them to benchmarks/results/image_build.json.
#
# Storage lives in $PSEUDOVAD_VERIFY_DIR (default .build/verify, git-ignored). At the end the
# built image and the base stay there (push with `buildah push`); --clean removes everything.
# pip inside the build trusts $PIP_CERT's CAs when it is set (a TLS-intercepting proxy).
# Options: --torch-wheel FILE, --torch-index URL, --allow-dirty (build uncommitted changes),
# --clean, --keep-base-only (remove the built image, keep the base for the next run), --reuse (an
# image of this tag is already in the storage: skip the build, and report no build time).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"
WORK="${PSEUDOVAD_VERIFY_DIR:-$REPO/.build/verify}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_NAME=localhost/pseudovad-base:bookworm
TORCH_WHEEL=""
TORCH_INDEX=""
BUILD_FLAGS=()
CLEAN=0
KEEP_BASE_ONLY=0
REUSE=0

die() { echo "docker/verify.sh: $*" >&2; exit 2; }
step() { echo; echo "== $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --torch-wheel) TORCH_WHEEL="${2:?--torch-wheel needs a file}"; shift ;;
        --torch-index) TORCH_INDEX="${2:?--torch-index needs a URL}"; shift ;;
        --allow-dirty) BUILD_FLAGS+=(--allow-dirty) ;;
        --clean) CLEAN=1 ;;
        --reuse) REUSE=1 ;;
        --keep-base-only) KEEP_BASE_ONLY=1 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and a chroot build need it)"
for tool in buildah podman debootstrap; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install podman buildah debootstrap)"
done
if [ -z "$TORCH_INDEX" ] && [ -z "$TORCH_WHEEL" ]; then
    for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
        for f in "$dir"/torch-2.13.0+cpu-cp311-cp311-manylinux*_x86_64.whl; do
            [ -f "$f" ] && { TORCH_WHEEL="$f"; break 2; }
        done
    done
    [ -n "$TORCH_WHEEL" ] || die "no torch-2.13.0+cpu cp311 wheel in \$PIP_FIND_LINKS or /opt/wheels: pass --torch-wheel FILE or --torch-index URL"
fi

# Private container storage and settings: vfs needs no overlay support; the sandbox refuses
# setting ulimits, so containers get none; no systemd for cgroups or events.
mkdir -p "$WORK"
cat > "$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
runroot = "$WORK/run"
graphroot = "$WORK/storage"
EOF
cat > "$WORK/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf" BUILDAH_ISOLATION=chroot

step "1. base image ($BASE_NAME)"
if ! podman image exists "$BASE_NAME"; then
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR"
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_NAME"
    rm -rf "$WORK/rootfs"
fi
BASE_DIGEST="$(podman image inspect --format '{{.Digest}}' "$BASE_NAME")"
BASE="${BASE_NAME%:*}@$BASE_DIGEST"
echo "base: $BASE ($(podman image inspect --format '{{.Size}}' "$BASE_NAME" | awk '{printf "%.0f MB", $1/1e6}'))"

step "2. build (docker/build.sh --tool buildah)"
if [ -n "$TORCH_WHEEL" ]; then TORCH=(--torch-wheel "$TORCH_WHEEL"); else TORCH=(--torch-index "$TORCH_INDEX"); fi
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then BUILD_FLAGS+=(--ca-bundle "$PIP_CERT"); fi
if [ "$REUSE" = 1 ]; then
    TAG="$(docker/build.sh --print-tag --registry localhost "${BUILD_FLAGS[@]}")"
    podman image exists "$TAG" || die "--reuse: no image $TAG in $WORK"
    build_seconds=-1
else
    t0=$(date +%s)
    docker/build.sh --tool buildah --registry localhost --base "$BASE" "${TORCH[@]}" "${BUILD_FLAGS[@]}" -- --pull=never \
        2>&1 | tee "$WORK/build.log"
    build_seconds=$(( $(date +%s) - t0 ))
    TAG="$(tail -n1 "$WORK/build.log" | sed -n 's/^image: //p')"
    [ -n "$TAG" ] || die "build failed (log: $WORK/build.log)"
fi
[ -n "$TORCH_WHEEL" ] && rm -f "docker/local/$(basename "$TORCH_WHEEL")"
[ -n "${PIP_CERT:-}" ] && rm -f "docker/local/$(basename "$PIP_CERT")"
size_bytes="$(podman image inspect --format '{{.Size}}' "$TAG")"
labels="$(podman image inspect --format '{{json .Labels}}' "$TAG")"
echo "built $TAG in ${build_seconds}s; labels: $labels"

step "3. inside the image"
ctr="$(buildah from --pull=never "$TAG")"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
in_image() { buildah run --isolation chroot --env HOME=/home/pseudovad "$ctr" -- "$@"; }
in_image id
in_image cat /etc/pseudovad/build.json
in_image pseudovad --help | head -n 3
in_image python -c "
import components, pipelines.training, pipelines.retrain
from kfp import compiler
for name in ('training', 'retrain'):
    p = getattr(getattr(pipelines, name), name + '_pipeline')
    compiler.Compiler().compile(p, f'/tmp/{name}.yaml')
print('components:', ', '.join(components.__all__), '| compiled: training, retrain')
"
# the drift guard as a Kubeflow step runs it: compiled from this commit, it passes; from another, it refuses
compiled_from="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')@$(
    podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$TAG")"
case "$TAG" in *-dirty*) compiled_from="$compiled_from-dirty" ;; esac
in_image python -c "from pseudovad import build; build.check_compiled_from('$compiled_from'); print('drift guard: image holds', build.identity())"
if in_image python -c "from pseudovad import build; build.check_compiled_from('0.0.0@0000000000000000000000000000000000000000')" 2>"$WORK/drift.err"; then
    die "the drift guard let an image of other code run"
fi
echo "drift guard refuses other code: $(grep -m1 -o 'image drift: .*' "$WORK/drift.err")"
TINY=(-p synthetic.train_videos=2 -p synthetic.test_videos=2 -p synthetic.frames=48 -p synthetic.height=48
      -p synthetic.width=64 -p synthetic.walkers=2 -p data.size=[32,32] -p data.clip_len=8 -p data.scored_index=4
      -p train.epochs=2 -p device=cpu)
buildah copy --chown 1000:1000 "$ctr" params.yaml /home/pseudovad/params.yaml >/dev/null
t1=$(date +%s)
in_image pseudovad synthesize "${TINY[@]}"
in_image pseudovad extract "${TINY[@]}"
in_image pseudovad train "${TINY[@]}"
in_image pseudovad evaluate "${TINY[@]}" | tee "$WORK/evaluate.log"
pipeline_seconds=$(( $(date +%s) - t1 ))
auc_line="$(grep '^evaluate: micro AUC' "$WORK/evaluate.log" | tail -n1)"
[ -n "$auc_line" ] || die "evaluate printed no AUC line"
mlflow_commit="$(in_image python -c "
from mlflow import MlflowClient
c = MlflowClient('sqlite:///mlflow.db')
runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
print(' '.join(sorted({r.data.tags.get('pseudovad.stage', '?') + '=' + r.data.tags.get('git.commit', 'none') for r in runs})))
" 2>/dev/null | tail -n1)"
echo "MLflow runs' git.commit tags: $mlflow_commit"
buildah rm "$ctr" >/dev/null
trap - EXIT

step "4. size"
rm -rf "$WORK/oci"
buildah push --quiet "$TAG" "oci:$WORK/oci:image" >/dev/null
compressed_bytes="$(du -sb "$WORK/oci/blobs" | cut -f1)"
rm -rf "$WORK/oci"

mkdir -p benchmarks/results
TAG="$TAG" BASE="$BASE" LABELS="$labels" AUC_LINE="$auc_line" MLFLOW_COMMIT="$mlflow_commit" \
BUILD_SECONDS="$build_seconds" SIZE="$size_bytes" COMPRESSED="$compressed_bytes" PIPELINE_SECONDS="$pipeline_seconds" \
TOOL="buildah $(buildah --version | awk '{print $3}') (chroot isolation, vfs storage)" \
TORCH="$([ -n "$TORCH_WHEEL" ] && echo "local wheel $(basename "$TORCH_WHEEL")" || echo "index $TORCH_INDEX")" \
python3 - <<'EOF'
import json, os, platform
e = os.environ
out = {
    "image": e["TAG"], "base": e["BASE"], "tool": e["TOOL"], "torch": e["TORCH"],
    "build_seconds": int(e["BUILD_SECONDS"]), "size_bytes": int(e["SIZE"]), "compressed_bytes": int(e["COMPRESSED"]),
    "in_image_pipeline_seconds": int(e["PIPELINE_SECONDS"]), "evaluate_line": e["AUC_LINE"],
    "mlflow_git_commit_tags": e["MLFLOW_COMMIT"], "labels": json.loads(e["LABELS"]),
    "machine": f"{os.cpu_count()} CPUs, {platform.machine()}", "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
}
with open("benchmarks/results/image_build.json", "w") as f:
    f.write(json.dumps(out, indent=2) + "\n")
EOF

if [ "$KEEP_BASE_ONLY" = 1 ]; then buildah rmi "$TAG" >/dev/null; fi
buildah rmi --prune >/dev/null 2>&1 || true
if [ "$CLEAN" = 1 ]; then
    buildah rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
fi
echo
echo "image:      $TAG (base $BASE)"
echo "size:       $(awk "BEGIN {printf \"%.2f GB uncompressed, %.2f GB compressed layers\", $size_bytes/1e9, $compressed_bytes/1e9}")"
echo "build:      ${build_seconds}s (load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "pipeline:   ${pipeline_seconds}s in the image: $auc_line"
echo "storage:    $(du -sh "$WORK" 2>/dev/null | cut -f1) in $WORK"
echo "written:    benchmarks/results/image_build.json"
