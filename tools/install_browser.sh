#!/usr/bin/env bash
# Chromium for `make test-browser`: Debian's package (apt-get), used when /usr/bin/chromium is missing.
# Playwright drives it; no browser is ever downloaded from elsewhere. Set RSIS_CHROMIUM to use
# another Chromium binary instead. Runs without stdin (CI); needs root or sudo for apt-get.
set -euo pipefail

CHROMIUM="${RSIS_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_browser: no $CHROMIUM and no apt-get; install Chromium and set RSIS_CHROMIUM" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    echo "install_browser: $CHROMIUM missing, installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y chromium fonts-liberation </dev/null
fi
# (Debian's wrapper script prints a harmless shell warning on stderr.)
echo "install_browser: $("$CHROMIUM" --version 2>/dev/null)"
