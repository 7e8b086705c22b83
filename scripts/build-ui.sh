#!/usr/bin/env bash
# Builds the web UI (ui/) into ui/dist/: the wasm app, its JS glue, index.html and style.css.
# The observer embeds ui/dist/ when it is compiled (observer/build.rs), so run this before
# `cargo build --release`; `./dev demo` does both. Needs the wasm32-unknown-unknown target and
# wasm-bindgen-cli of exactly the wasm-bindgen version in Cargo.lock (scripts/setup.sh installs
# both). Output elsewhere: FLOWSCOPE_UI_DIST=DIR (the observer's build reads the same variable).
set -euo pipefail
cd "$(dirname "$0")/.."

dist="${FLOWSCOPE_UI_DIST:-ui/dist}"
target_dir="${CARGO_TARGET_DIR:-target}"
profile=wasm-release

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }') || true
if [ "$want" != "$have" ]; then
  echo "build-ui: wasm-bindgen ${have:-not found}, need $want:" >&2
  echo "  cargo install wasm-bindgen-cli --version =$want   (or: bash scripts/setup.sh)" >&2
  exit 1
fi

cargo build --profile "$profile" --target wasm32-unknown-unknown -p flowscope-ui
staging="$dist.tmp"
rm -rf "$staging"
mkdir -p "$staging"
wasm-bindgen --target web --no-typescript --out-dir "$staging" \
  "$target_dir/wasm32-unknown-unknown/$profile/flowscope_ui.wasm"
cp ui/static/index.html ui/static/style.css "$staging/"
# Compressed once here, served to browsers that accept gzip (server/src/ui.rs): the wasm
# shrinks to about a third, which matters over `kubectl port-forward` and slow links.
for f in "$staging"/*.wasm "$staging"/*.js "$staging"/*.css; do
  gzip -9 -n -k "$f"
done
# Swap in whole, so a failed build never leaves half a UI for the observer to embed.
rm -rf "$dist"
mv "$staging" "$dist"
ls -l "$dist" | awk 'NR > 1 { printf "build-ui: %-24s %8d bytes\n", $9, $5 }'
