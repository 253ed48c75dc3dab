#!/usr/bin/env bash
# Rebuilds the follower page's WebAssembly into web/dist/ (committed: the join endpoint embeds
# it, so `cargo build` of lansync needs no wasm tools). Reproducible: pinned wasm-bindgen (the
# CLI must equal the crate's version, web/Cargo.toml), web/Cargo.lock, release profile.
#   web/build.sh           rebuild web/dist/
#   web/build.sh --check   rebuild into a temporary directory; fail if web/dist/ differs
set -euo pipefail
cd "$(dirname "$0")"

WASM_BINDGEN_VERSION=0.2.130
# The target directory is web/target/ unless CARGO_TARGET_DIR says otherwise; paths inside the
# wasm (panic locations) are made relative, so any checkout builds the same bytes.
export RUSTFLAGS="--remap-path-prefix=$(cd .. && pwd)=lansync --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=cargo"

if ! command -v rustup >/dev/null || ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  if command -v rustup >/dev/null; then
    rustup target add wasm32-unknown-unknown
  else
    echo "web/build.sh: the wasm32-unknown-unknown target is missing: install it with rustup." >&2
    exit 1
  fi
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$WASM_BINDGEN_VERSION" ]; then
  echo "web/build.sh: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)" >&2
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

cargo build --release --locked --target wasm32-unknown-unknown
target_dir=${CARGO_TARGET_DIR:-target}
out=dist
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$out" \
  "$target_dir/wasm32-unknown-unknown/release/lansync_web.wasm"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" dist >/dev/null; then
    echo "web/build.sh: web/dist/ is not what web/ builds: run web/build.sh and commit web/dist/." >&2
    exit 1
  fi
  echo "web/dist/ matches its sources"
fi
ls -l dist/
echo "wasm: $(stat -c %s dist/lansync_web_bg.wasm) bytes, gzip $(gzip -9c dist/lansync_web_bg.wasm | wc -c) bytes"
