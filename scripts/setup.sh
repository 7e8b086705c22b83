#!/usr/bin/env bash
# Installs everything flowscope's build and tests need on a fresh Debian 12 machine (as root).
# Idempotent: every step checks before it installs, so a second run takes seconds.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

need_apt=()
# chromium: the web UI's browser tests (Debian's Chromium, driven by playwright-core from npm);
# wrk and hey: the L7 proxy's benchmark (bench/l7.sh); protoc, grpcio's Python plugin and
# Debian's python3-grpcio: the Hubble gRPC client tests/grpc.rs generates from the vendored protos
# (libprotobuf-dev has the google/protobuf/*.proto they import).
for pkg in llvm-22-dev iproute2 iputils-ping iperf3 iptables nftables prometheus bpftool tcpdump python3 python3-venv python3-websockets curl ca-certificates openssl chromium wrk hey protobuf-compiler libprotobuf-dev protobuf-compiler-grpc python3-grpcio python3-protobuf; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# Any Node.js with npm will do (a machine may carry a newer one than Debian's; keep it).
{ command -v node && command -v npm; } >/dev/null 2>&1 || need_apt+=(nodejs npm)
# kubectl renders deploy/kubernetes' kustomization in tests/deploy.rs (any kubectl will do).
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The eBPF crate builds on nightly with -Z build-std=core, which needs rust-src.
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  log "rustup component add rust-src --toolchain nightly"
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  rustup component add rust-src --toolchain nightly
fi
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

# bpf-linker must link against the same LLVM major as the nightly rustc (22).
if ! command -v bpf-linker >/dev/null 2>&1; then
  log "cargo install bpf-linker (llvm-22)"
  LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 LLVM_PREFIX=/usr/lib/llvm-22 \
    cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22
fi

# The web UI (ui/) builds for wasm32; wasm-bindgen-cli must be exactly the wasm-bindgen version
# in Cargo.lock (scripts/build-ui.sh checks it). No --locked: the crates.io mirror may lag the
# newest versions of wasm-bindgen-cli's own dependencies.
rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || {
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
}
wasm_bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$(dirname "$0")/../Cargo.lock")
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$wasm_bindgen" ]; then
  log "cargo install wasm-bindgen-cli --version =$wasm_bindgen"
  cargo install wasm-bindgen-cli --version "=$wasm_bindgen"
fi

# playwright-core (pinned in tests/ui/package-lock.json) drives /usr/bin/chromium; it downloads
# no browser.
if [ ! -d "$(dirname "$0")/../tests/ui/node_modules/playwright-core" ]; then
  log "npm ci (tests/ui: playwright-core)"
  npm ci --prefix "$(dirname "$0")/../tests/ui" --no-audit --no-fund >/dev/null
fi

# kubernetes-validate (PyPI) checks deploy/kubernetes against the Kubernetes API schemas it
# bundles (offline), in its own virtualenv (Debian's Python is externally managed); grpcio is
# the reference gRPC implementation the L7 tests call the lab's gRPC server with.
VENV=/opt/flowscope/venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  log "pip install kubernetes-validate (into $VENV)"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubernetes-validate
fi
if ! "$VENV/bin/python" -c 'import grpc' 2>/dev/null; then
  log "pip install grpcio (into $VENV)"
  "$VENV/bin/pip" install -q grpcio
fi

# cargo-fuzz drives the fuzz targets (scripts/fuzz.sh, fuzz/) on the nightly toolchain.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "cargo install cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.1 --locked
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install cargo-nextest --locked
fi

# A real Kubernetes API server for the tests of the Kubernetes source: kube-apiserver and etcd
# built from Debian's sources into /opt/flowscope/kube (about 5 minutes, once; kept there).
bash "$(dirname "$0")/kube-apiserver.sh" build

# bpffs for pinning; tracefs for tracepoints (neither is mounted by default here).
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
log "ok"
