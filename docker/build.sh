#!/usr/bin/env bash
# Build the project image from this checkout, tagged by commit: <registry>/pseudovad:<git-sha>[-cuda]
# (git-sha = the first 12 hex digits of HEAD), with docker if a daemon answers, else buildah.
#
#   docker/build.sh                                  # CPU image, ghcr.io/pseudovad/pseudovad:<sha>
#   docker/build.sh --cuda --registry registry.example.com/ml --push
#   docker/build.sh --torch-wheel /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
#   docker/build.sh --ca-bundle /etc/ssl/certs/ca-certificates.crt   # pip behind a TLS-intercepting proxy
#   docker/build.sh --print-tag [--cuda]             # only print the tag this checkout builds
#
# Options: --cuda (FLAVOUR=cuda, tag suffix -cuda); --registry REG (default $PSEUDOVAD_REGISTRY or
# ghcr.io/pseudovad); --base REF (default: docker/base-image); --torch-index URL; --torch-wheel FILE
# (a torch 2.13.0 wheel) and --ca-bundle FILE (CAs pip trusts), both copied into docker/local/ for
# the build stage only; --tool docker|buildah; --push; --allow-dirty
# (uncommitted changes: tag <sha>-dirty[-cuda]); anything after `--` goes to the build command.
# The last line printed is `image: <tag>`.
set -euo pipefail

cd "$(dirname "$0")/.."
REGISTRY="${PSEUDOVAD_REGISTRY:-ghcr.io/pseudovad}"
FLAVOUR=cpu
BASE=""
TORCH_INDEX=""
TORCH_WHEEL=""
CA_BUNDLE=""
TOOL=""
PUSH=0
ALLOW_DIRTY=0
PRINT_TAG=0
EXTRA=()

die() { echo "docker/build.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --cuda) FLAVOUR=cuda ;;
        --registry) REGISTRY="${2:?--registry needs a value}"; shift ;;
        --base) BASE="${2:?--base needs an image reference}"; shift ;;
        --torch-index) TORCH_INDEX="${2:?--torch-index needs a URL}"; shift ;;
        --torch-wheel) TORCH_WHEEL="${2:?--torch-wheel needs a file}"; shift ;;
        --ca-bundle) CA_BUNDLE="${2:?--ca-bundle needs a file}"; shift ;;
        --tool) TOOL="${2:?--tool needs docker or buildah}"; shift ;;
        --push) PUSH=1 ;;
        --allow-dirty) ALLOW_DIRTY=1 ;;
        --print-tag) PRINT_TAG=1 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

COMMIT="$(git rev-parse HEAD 2>/dev/null)" || die "not a git checkout: the image is tagged by commit"
SHA="${COMMIT:0:12}"
# What the Dockerfile copies: a change there not yet committed would be baked under a commit that lacks it.
DIRTY="$(git status --porcelain -- src components pipelines pyproject.toml requirements.lock README.md docker \
         .dockerignore | grep -v '^?? docker/local/' || true)"
TAG_SUFFIX=""
if [ -n "$DIRTY" ]; then
    [ "$ALLOW_DIRTY" = 1 ] || die "uncommitted changes in what the image copies (commit them, or --allow-dirty to tag ${SHA}-dirty):
$DIRTY"
    TAG_SUFFIX="-dirty"
fi
[ "$FLAVOUR" = cuda ] && TAG_SUFFIX="${TAG_SUFFIX}-cuda"
TAG="${REGISTRY%/}/pseudovad:${SHA}${TAG_SUFFIX}"
if [ "$PRINT_TAG" = 1 ]; then echo "$TAG"; exit 0; fi

VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
[ -n "$BASE" ] || BASE="$(grep -v '^[[:space:]]*\(#\|$\)' docker/base-image | head -n1 | tr -d '[:space:]')"
[ -n "$BASE" ] || die "docker/base-image: no image reference in it"
BASE_DIGEST=""
case "$BASE" in
    *@sha256:*) BASE_DIGEST="${BASE##*@}" ;;
    *) echo "docker/build.sh: warning: base image $BASE is not pinned by digest (see docker/base-image)" >&2 ;;
esac

# into the build context (docker/local/, git-ignored): a hard link costs no disk when it can be one
into_context() {
    local name; name="$(basename "$1")"
    [ "$(realpath "$1")" = "$(realpath -m "docker/local/$name")" ] \
        || ln -f "$1" "docker/local/$name" 2>/dev/null || cp -f "$1" "docker/local/$name"
    echo "$name"
}
if [ -n "$TORCH_WHEEL" ]; then
    [ -f "$TORCH_WHEEL" ] || die "--torch-wheel: $TORCH_WHEEL: no such file"
    case "$(basename "$TORCH_WHEEL")" in torch-2.13.0*.whl) ;; *) die "--torch-wheel: $(basename "$TORCH_WHEEL") is not a torch 2.13.0 wheel (requirements.lock pins torch==2.13.0)" ;; esac
    TORCH_WHEEL="$(into_context "$TORCH_WHEEL")"
fi
if [ -n "$CA_BUNDLE" ]; then
    [ -f "$CA_BUNDLE" ] || die "--ca-bundle: $CA_BUNDLE: no such file"
    CA_BUNDLE="$(into_context "$CA_BUNDLE")"
fi

if [ -z "$TOOL" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then TOOL=docker
    elif command -v buildah >/dev/null; then TOOL=buildah
    else die "neither a docker daemon nor buildah is available (apt-get install buildah)"; fi
fi

ARGS=(--build-arg "BASE_IMAGE=$BASE" --build-arg "BASE_DIGEST=$BASE_DIGEST" --build-arg "FLAVOUR=$FLAVOUR"
      --build-arg "TORCH_INDEX=$TORCH_INDEX" --build-arg "TORCH_WHEEL=$TORCH_WHEEL" --build-arg "CA_BUNDLE=$CA_BUNDLE"
      --build-arg "VERSION=$VERSION" --build-arg "GIT_COMMIT=$COMMIT" --build-arg "GIT_DIRTY=$([ -n "$DIRTY" ] && echo true || echo false)"
      --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" -f docker/Dockerfile -t "$TAG")
echo "docker/build.sh: $TOOL builds $TAG (pseudovad $VERSION, commit $COMMIT, $FLAVOUR, base $BASE)" >&2
case "$TOOL" in
    docker) docker build "${ARGS[@]}" "${EXTRA[@]}" . ;;
    # buildah: isolation from $BUILDAH_ISOLATION (docker/verify.sh sets chroot), OCI format
    buildah) buildah bud "${ARGS[@]}" "${EXTRA[@]}" . ;;
    *) die "--tool: expected docker or buildah, got $TOOL" ;;
esac
if [ "$PUSH" = 1 ]; then
    case "$TOOL" in
        docker) docker push "$TAG" ;;
        buildah) buildah push "$TAG" "docker://$TAG" ;;
    esac
fi
echo "image: $TAG"
