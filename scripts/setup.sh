#!/usr/bin/env bash
# Installs what `make demo` / `make test` need on a fresh Debian machine, skipping what is present.
#   scripts/setup.sh demo   the wasm32 target, rust-src and wasm-bindgen-cli (the version Cargo.lock pins)
#   scripts/setup.sh test   the same, plus Mesa's Vulkan driver (lavapipe), Debian's chromium,
#                           Node.js/npm and the npm packages of package-lock.json (playwright-core, typescript, axe-core)
# Rust itself (rustup, cargo) must be there already: it cannot be installed from a package registry.
# The first run takes about 10 minutes (wasm-bindgen-cli compiles from source, ~8 min on 2 cores);
# later runs take a second.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-test}"
case "$mode" in demo|test) ;; *) echo "usage: scripts/setup.sh demo|test" >&2; exit 2 ;; esac

say() { printf 'setup: %s\n' "$*"; }
for tool in cargo rustup; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is missing: install Rust with rustup (https://rustup.rs) first" >&2; exit 1; }
done

# --- Debian packages ---------------------------------------------------------------------------
need_apt=()
if [ "$mode" = test ]; then
  dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
  dpkg -s libvulkan1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "setup: missing ${need_apt[*]}, and this is not a Debian-like machine (no apt-get): install them by hand" >&2; exit 1; }
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: installing ${need_apt[*]} needs root (no sudo here)" >&2; exit 1; }
    SUDO="sudo"
  fi
  say "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

# --- Rust: the wasm target and wasm-bindgen-cli ----------------------------------------------
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the Rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
# The threaded wasm build rebuilds std with atomics (-Z build-std): it needs the standard library's
# source.
if ! rustup component list --installed | grep -q '^rust-src'; then
  say "adding the Rust component rust-src (the threaded wasm build rebuilds std)"
  rustup component add rust-src
fi
# wasm-bindgen-cli must equal the wasm-bindgen crate version in Cargo.lock.
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
[ -n "$wb_version" ] || { echo "setup: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
  say "installing wasm-bindgen-cli $wb_version (compiles from source: ~8 minutes the first time)"
  # --locked first; its lock can pin a yanked crate, then the crate's own bounds are used.
  cargo install wasm-bindgen-cli --version "$wb_version" --locked \
    || cargo install wasm-bindgen-cli --version "$wb_version"
fi

# --- npm packages of the browser tests ---------------------------------------------------------
if [ "$mode" = test ]; then
  # npm ci when any package of package.json is missing or at another version than the lock's.
  if ! node -e '
    const lock = require("./package-lock.json").packages;
    for (const name of Object.keys(require("./package.json").devDependencies)) {
      let have = null;
      try { have = require(`./node_modules/${name}/package.json`).version; } catch {}
      if (have !== lock[`node_modules/${name}`].version) process.exit(1);
    }' 2>/dev/null; then
    say "installing the npm packages of package-lock.json (playwright-core, typescript, axe-core)"
    npm ci --no-audit --no-fund
  fi
fi
say "ready for make $mode"
