#!/bin/sh
# Installs the Debian packages maye-c builds and tests with. Safe to re-run.
set -e
PKGS="build-essential pkg-config protobuf-c-compiler libprotobuf-c-dev libzstd-dev libyaml-dev libcjson-dev
libpcre2-dev libutf8proc-dev libpng-dev libjpeg62-turbo-dev libopenblas-openmp-dev libcairo2-dev gnuplot-nox zstd"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && { echo "deps: all packages present"; exit 0; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
