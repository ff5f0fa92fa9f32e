#!/usr/bin/env bash
# Installs what building and testing Fluxo needs on Debian 12, only what is
# missing: PHP 8.2 with headers and FPM, PHPUnit, libclang (for ext-php-rs bindings),
# LibreOffice Calc (headless) and openpyxl (the independent XLSX reader the tests use).
set -euo pipefail

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
command -v php >/dev/null || packages+=(php8.2-cli)
command -v php-config >/dev/null || packages+=(php8.2-dev)
command -v phpunit >/dev/null || packages+=(phpunit)
# PHP-FPM and a FastCGI client: FpmTest runs the extension as it is deployed.
[ -x /usr/sbin/php-fpm8.2 ] || packages+=(php8.2-fpm)
command -v cgi-fcgi >/dev/null || packages+=(libfcgi-bin)
command -v clang >/dev/null || packages+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || packages+=(libclang-dev)
command -v make >/dev/null || packages+=(make)
command -v protoc >/dev/null || packages+=(protobuf-compiler)
command -v openssl >/dev/null || packages+=(openssl)
# LibreOffice Calc, headless: a real spreadsheet application opens the files
# (php-tests/LibreOfficeTest.php). Without its recommends (fonts, Java).
lean=()
command -v soffice >/dev/null || lean+=(libreoffice-calc-nogui)
if [ ${#packages[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${packages[*]} ${lean[*]}"
  sudo_if_needed apt-get update -q
fi
if [ ${#packages[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -q "${packages[@]}"
fi
if [ ${#lean[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -q --no-install-recommends "${lean[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust 1.89 or newer (https://rustup.rs) and run again" >&2
  exit 1
fi

# openpyxl: the independent XLSX reader; grpcio, grpcio-tools, pytest: the
# Python gRPC client test.
if ! python3 -c 'import openpyxl, grpc, grpc_tools, pytest' 2>/dev/null; then
  echo "Installing Python packages: openpyxl grpcio grpcio-tools pytest"
  python3 -m pip install --quiet openpyxl grpcio grpcio-tools pytest 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages openpyxl grpcio grpcio-tools pytest
fi
