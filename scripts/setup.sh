#!/usr/bin/env bash
# Installs what building (and, with --test, testing) TenantAtlas needs and is missing.
# Idempotent: when everything is there it only checks, in a second or two.
#   - the wasm32-unknown-unknown target (rustup; offline fallback: Debian's rustc-web + build-std)
#   - wasm-bindgen CLI of exactly the version in Cargo.lock
#   - the build's wasm splitter (scripts/wasm-split), rebuilt when its source changes
#   - npm's binaryen (wasm-opt) and Playwright (npm ci in end2end/), Debian's brotli
#   - with --test: cargo-nextest, Debian's Chromium, a running PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
[[ "${1:-}" == "--test" ]] && want_test=true
say() { printf '==> %s\n' "$*"; }

apt_updated=false
apt_install() {
  if ! $apt_updated; then
    apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

# 1. A Rust standard library for the browser target.
mkdir -p target
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rm -f target/.front-toolchain
elif rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
  say "installed the wasm32-unknown-unknown target"
  rm -f target/.front-toolchain
else
  # rustup could not download: Debian's rustc-web builds std for wasm from its sources.
  say "rustup cannot download; using Debian's rustc-web with -Zbuild-std for the browser bundle"
  [[ -x /usr/bin/rustc ]] && [[ -d /usr/lib/rustlib/src/rust ]] && command -v rust-lld >/dev/null \
    || apt_install rustc-web cargo-web rust-web-src lld-22
  cat > target/.front-toolchain <<'TOOLCHAIN'
# Written by scripts/setup.sh: build the browser bundle with Debian's toolchain and build-std.
cargo_front=(env RUSTC_BOOTSTRAP=1 /usr/bin/cargo)
FRONT_EXTRA_ARGS="-Zbuild-std=std,panic_abort"
TOOLCHAIN
fi

# 2. wasm-bindgen CLI: must equal the wasm-bindgen crate in Cargo.lock.
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg_version" ]]; then
  say "installing wasm-bindgen-cli $wbg_version (1–2 minutes, once per machine)"
  # Not --locked: the CLI's own lockfile pins a webpki-roots version the registry no longer has.
  # A debug build: its install takes about 60 % of the release build's CPU, and it binds the
  # bundle in 1.7 s instead of 0.4 s, byte for byte the same (docs/benchmarks.md).
  cargo install wasm-bindgen-cli --version "$wbg_version" --debug --quiet
fi

# 2b. The wasm splitter that cuts the lazy routes out of the bundle (scripts/build.sh); a tool
#     of this repository, reinstalled when its source differs from the one installed.
split_source=$(cat scripts/wasm-split/Cargo.toml scripts/wasm-split/Cargo.lock scripts/wasm-split/src/*.rs | sha256sum | cut -c1-20)
split_stamp="${CARGO_HOME:-$HOME/.cargo}/.tenantatlas-wasm-split.source"
if ! command -v tenantatlas-wasm-split >/dev/null || [[ "$(cat "$split_stamp" 2>/dev/null)" != "$split_source" ]]; then
  say "installing the wasm splitter (scripts/wasm-split, about 1 minute, once per machine)"
  cargo install --debug --locked --path scripts/wasm-split --target-dir target/tools --quiet
  echo "$split_source" > "$split_stamp"
fi

# 3. npm's binaryen (wasm-opt, for the size-optimised bundle) and Playwright, pinned by
#    end2end/package-lock.json; Playwright's browsers come from Debian, not from Playwright.
command -v npm >/dev/null || { say "installing node and npm"; apt_install nodejs npm; }
if [[ ! -x end2end/node_modules/.bin/wasm-opt ]] || [[ ! -d end2end/node_modules/@playwright/test ]] \
  || [[ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]]; then
  say "installing binaryen and Playwright (npm ci in end2end/)"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
# brotli: the bundle's precompressed .br copies (build.sh falls back to gzip alone without it).
command -v brotli >/dev/null || { say "installing brotli"; apt_install brotli || say "brotli could not be installed: the bundle gets gzip copies only"; }

$want_test || exit 0

# 4. Test tools.
cargo nextest --version >/dev/null 2>&1 || { say "installing cargo-nextest"; cargo install cargo-nextest --locked --quiet; }

if [[ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]]; then
  say "installing Debian's chromium"
  apt_install chromium
fi

# 5. PostgreSQL (the second engine of the test suite): the server TEST_POSTGRES_ADMIN_URL names,
# or the local one, started if it is down.
if [[ -n "${TEST_POSTGRES_ADMIN_URL:-}" ]]; then
  pg_isready -q -d "$TEST_POSTGRES_ADMIN_URL" || {
    echo "PostgreSQL is not reachable at TEST_POSTGRES_ADMIN_URL" >&2
    exit 1
  }
elif ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [[ -d /etc/postgresql ]] && [[ -n "$(ls /etc/postgresql)" ]]; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || {
    echo "PostgreSQL is not reachable on 127.0.0.1:5432; set TEST_POSTGRES_ADMIN_URL to a server where tests may create databases" >&2
    exit 1
  }
fi
