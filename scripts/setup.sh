#!/usr/bin/env bash
# Installs everything flowscope's build and tests need on a fresh Debian 12 machine (as root).
# Idempotent: every step checks before it installs, so a second run takes seconds.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

need_apt=()
for pkg in llvm-22-dev iproute2 iputils-ping iperf3 iptables prometheus bpftool tcpdump python3 python3-venv python3-websockets curl ca-certificates; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
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

# kubernetes-validate (PyPI) checks deploy/kubernetes against the Kubernetes API schemas it
# bundles (offline), in its own virtualenv (Debian's Python is externally managed).
VENV=/opt/flowscope/venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  log "pip install kubernetes-validate (into $VENV)"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubernetes-validate
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install cargo-nextest --locked
fi

# bpffs for pinning; tracefs for tracepoints (neither is mounted by default here).
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
log "ok"
