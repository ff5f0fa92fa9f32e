#!/usr/bin/env bash
# Installs what building and testing Fluxo needs on Debian 12, only what is
# missing: PHP 8.2 with headers, PHPUnit, libclang (for ext-php-rs bindings),
# and openpyxl (the independent XLSX reader the tests use).
set -euo pipefail

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
command -v php >/dev/null || packages+=(php8.2-cli)
command -v php-config >/dev/null || packages+=(php8.2-dev)
command -v phpunit >/dev/null || packages+=(phpunit)
command -v clang >/dev/null || packages+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || packages+=(libclang-dev)
command -v make >/dev/null || packages+=(make)
if [ ${#packages[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${packages[*]}"
  sudo_if_needed apt-get update -q
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -q "${packages[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust 1.89 or newer (https://rustup.rs) and run again" >&2
  exit 1
fi

if ! python3 -c 'import openpyxl' 2>/dev/null; then
  echo "Installing openpyxl (XLSX reader for the tests)"
  python3 -m pip install --quiet openpyxl 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages openpyxl
fi
