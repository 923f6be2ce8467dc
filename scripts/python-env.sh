#!/usr/bin/env bash
# Creates (once) a Python virtualenv with grpcio, grpcio-tools, grpcio-health-checking,
# grpcio-reflection and grpcio-status from PyPI, for the tests that use grpcio as a foreign
# client and server, and prints the path of its python.
# The venv lives in $VOLLEY_PYENV (default /var/tmp/volley-pyenv); a second run reuses it.
# The base interpreter is $VOLLEY_PYTHON_BASE, else the first python3 on PATH.
set -euo pipefail
venv="${VOLLEY_PYENV:-/var/tmp/volley-pyenv}"
grpcio="${VOLLEY_GRPCIO_VERSION:-1.85.3}"
tools="${VOLLEY_GRPCIO_TOOLS_VERSION:-1.85.1}"
health="${VOLLEY_GRPCIO_HEALTH_VERSION:-1.85.1}"
reflection="${VOLLEY_GRPCIO_REFLECTION_VERSION:-1.85.1}"
status="${VOLLEY_GRPCIO_STATUS_VERSION:-1.85.3}"
stamp="$venv/.volley-$grpcio-$tools-health-$health-reflection-$reflection-status-$status"
if [ ! -f "$stamp" ]; then
    py="${VOLLEY_PYTHON_BASE:-$(command -v python3 || echo /usr/bin/python3)}"
    if ! "$py" -m venv --help >/dev/null 2>&1; then
        apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
    fi
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "grpcio==$grpcio" "grpcio-tools==$tools" "grpcio-health-checking==$health" \
        "grpcio-reflection==$reflection" "grpcio-status==$status" >&2
    touch "$stamp"
fi
echo "$venv/bin/python"
