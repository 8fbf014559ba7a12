#!/usr/bin/env bash
# A Prometheus binary for the demo, the tests and the benchmarks (`make prometheus`). In order:
#   1. $PROMETHEUS_BIN, or `prometheus` on PATH: nothing to do;
#   2. apt (Debian, Ubuntu): the distribution's package, with sudo when not root. Where systemd
#      runs, the package starts a system daemon on :9090; it is stopped (the project starts its
#      own Prometheus on a free loopback port whenever it needs one);
#   3. the release pinned below, downloaded into $PROMETHEUS_CACHE (.cache/prometheus/) and
#      unpacked only if its SHA-256 matches scripts/prometheus.sha256sums (the release's
#      sha256sums.txt lines for linux/darwin x amd64/arm64).
# The demo and the tests find 1 and 2 on PATH; the Makefile exports PROMETHEUS_BIN for 3.
#
# usage: install-prometheus.sh           the steps above; prints the binary's path
#        install-prometheus.sh download  step 3 alone (set PROMETHEUS_BIN to the path it prints
#                                        to use it instead of an older one on PATH)
#        install-prometheus.sh --which   installs nothing: prints the binary the steps would use
#                                        now (PROMETHEUS_BIN, PATH, the download), nothing if none
# environment: PROMETHEUS_CACHE (the download folder), PROMETHEUS_NO_APT=1 (skip step 2),
#              PROMETHEUS_RELEASES_URL (a mirror of github.com/prometheus/prometheus/releases/download)
set -euo pipefail

PROMETHEUS_VERSION=3.5.0

scripts_dir="$(cd "$(dirname "$0")" && pwd)"
checksums="$scripts_dir/prometheus.sha256sums"
cache="${PROMETHEUS_CACHE:-$(dirname "$scripts_dir")/.cache/prometheus}"
releases="${PROMETHEUS_RELEASES_URL:-https://github.com/prometheus/prometheus/releases/download}"

say() { echo "prometheus: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# The binary in use now, on stdout; fails when there is none.
current() {
  if [ -n "${PROMETHEUS_BIN:-}" ]; then
    echo "$PROMETHEUS_BIN"
  elif command -v prometheus 2>/dev/null; then
    :
  elif [ -x "$cache/bin/prometheus" ]; then
    echo "$cache/bin/prometheus"
  else
    return 1
  fi
}

report() {
  say "using $1 ($("$1" --version 2>&1 | head -n 1))"
  echo "$1"
}

with_apt() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      say "not root and no sudo: not installing with apt"
      return 1
    }
    sudo="sudo"
  fi
  say "installing the distribution's package: ${sudo:+sudo }apt-get install prometheus"
  $sudo apt-get update -qq || return 1
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus || return 1
  # The package's daemon (on :9090, started where systemd or sysvinit runs): not needed here.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    if $sudo systemctl stop prometheus >/dev/null 2>&1; then
      say "stopped the prometheus service the package started" \
        "('${sudo:+sudo }systemctl disable prometheus' keeps it from starting at boot)"
    fi
  elif command -v service >/dev/null 2>&1 && [ -e /etc/init.d/prometheus ]; then
    $sudo service prometheus stop >/dev/null 2>&1 || true
  fi
  command -v prometheus >/dev/null 2>&1
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
  fi
}

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

download() {
  local os arch name archive expected actual
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) die "no release build for $(uname -s) here: install Prometheus (https://prometheus.io/download/) and put it on PATH or set PROMETHEUS_BIN" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "no release build for $(uname -m) here: install Prometheus (https://prometheus.io/download/) and put it on PATH or set PROMETHEUS_BIN" ;;
  esac
  name="prometheus-$PROMETHEUS_VERSION.$os-$arch"
  archive="$name.tar.gz"
  expected="$(awk -v f="$archive" '$1 !~ /^#/ && $2 == f { print $1 }' "$checksums")"
  [ -n "$expected" ] || die "no checksum for $archive in $checksums"
  if [ ! -x "$cache/$name/prometheus" ]; then
    mkdir -p "$cache"
    tmp="$(mktemp -d "$cache/.download.XXXXXX")" # global: the EXIT trap removes it
    trap 'rm -rf "$tmp"' EXIT
    say "downloading $releases/v$PROMETHEUS_VERSION/$archive"
    fetch "$releases/v$PROMETHEUS_VERSION/$archive" "$tmp/$archive" ||
      die "download failed: install Prometheus (https://prometheus.io/download/) and put it on PATH or set PROMETHEUS_BIN"
    actual="$(sha256 "$tmp/$archive")"
    [ "$actual" = "$expected" ] ||
      die "$archive: SHA-256 $actual is not the published $expected; nothing installed"
    tar -xzf "$tmp/$archive" -C "$tmp"
    [ -x "$tmp/$name/prometheus" ] || die "$archive holds no $name/prometheus"
    rm -rf "${cache:?}/$name"
    mv "$tmp/$name" "$cache/$name"
  fi
  mkdir -p "$cache/bin"
  ln -sfn "../$name/prometheus" "$cache/bin/prometheus"
  ln -sfn "../$name/promtool" "$cache/bin/promtool"
  report "$cache/bin/prometheus"
}

case "${1:-install}" in
  --which)
    current 2>/dev/null || true
    ;;
  download)
    download
    ;;
  install)
    if [ -n "${PROMETHEUS_BIN:-}" ] && [ ! -x "$PROMETHEUS_BIN" ]; then
      die "PROMETHEUS_BIN=$PROMETHEUS_BIN is not an executable"
    fi
    if found="$(current)"; then
      report "$found"
      exit 0
    fi
    if [ "${PROMETHEUS_NO_APT:-}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
      if with_apt; then
        report "$(command -v prometheus)"
        exit 0
      fi
      say "apt did not install prometheus: downloading the release instead"
    fi
    download
    ;;
  *)
    die "usage: $0 [install | download | --which]"
    ;;
esac
