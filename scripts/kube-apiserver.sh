#!/usr/bin/env bash
# A real Kubernetes API server for the tests of flowscope's Kubernetes source: kube-apiserver
# v1.20.2 built from Debian bookworm's `kubernetes` source package with Debian's Go 1.19 (the
# registries reachable here ship no kube-apiserver binary), and etcd 3.4 from Debian.
#
#   scripts/kube-apiserver.sh build         build once into $KUBE_DIR (default /opt/flowscope/kube);
#                                            a second run finds the binaries and returns at once
#   scripts/kube-apiserver.sh start RUN_DIR ETCD_PORT API_PORT
#                                            etcd and the API server on 127.0.0.1 with a fresh CA,
#                                            an admin token and RBAC; writes RUN_DIR/kubeconfig and
#                                            RUN_DIR/*.pid, returns once /readyz answers
#   scripts/kube-apiserver.sh apiserver RUN_DIR ETCD_PORT API_PORT
#                                            the API server alone again, on the RUN_DIR that
#                                            `start` made (after it was stopped: its etcd keeps
#                                            the data)
#
# KUBE_APISERVER_ARGS adds words to the API server's command line (the tests' replica without
# EndpointSlices: --runtime-config=discovery.k8s.io/v1beta1=false).
# Building takes about 5 minutes on 2 cores (1.3 GB of memory, 2.5 GB of disk, removed after).
# Nothing is installed system-wide: apt runs with a private source list and cache.
set -euo pipefail
KUBE_DIR=${KUBE_DIR:-/opt/flowscope/kube}
VERSION=v1.20.2
log() { printf '[kube-apiserver] %s\n' "$*" >&2; }

build() {
  if [ -x "$KUBE_DIR/bin/kube-apiserver" ] && [ -x "$KUBE_DIR/bin/etcd" ] \
     && "$KUBE_DIR/bin/kube-apiserver" --version 2>/dev/null | grep -q "$VERSION"; then
    return 0
  fi
  log "building kube-apiserver $VERSION and fetching etcd into $KUBE_DIR (about 5 minutes)"
  local W
  W=$(mktemp -d /tmp/flowscope-kube-build.XXXXXX)
  trap 'rm -rf "$W"' RETURN
  mkdir -p "$W"/{apt/lists/partial,apt/cache/archives/partial,debs,root,shim,home}
  cd "$W"
  # A private deb-src list: the system's apt configuration is not touched.
  echo 'deb-src http://deb.debian.org/debian bookworm main' > apt/sources.list
  local APTO=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache" -o Dir::Cache::pkgcache=
    -o Dir::Cache::srcpkgcache=)
  apt-get "${APTO[@]}" -qq update
  apt-get "${APTO[@]}" -qq source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1
  tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
  # Go 1.19, reflect2 1.0.2 and etcd 3.4 from bookworm, unpacked here, not installed.
  (cd debs && apt-get -qq download golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev etcd-server)
  for d in debs/*.deb; do dpkg -x "$d" root; done
  # The vendored reflect2 1.0.1 crashes under Go >= 1.18: 1.0.2 replaces it.
  local R=kubernetes-1.20.2/vendor/github.com/modern-go/reflect2
  rm -f "$R"/*.go "$R"/*.s
  cp root/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} "$R"/
  # The build scripts call `rsync -pc SRC DST`: a cp stand-in is enough.
  printf '#!/bin/sh\nargs=""\nfor a in "$@"; do case "$a" in -*) ;; *) args="$args '"'"'$a'"'"'";; esac; done\neval "cp -p $args"\n' > shim/rsync
  chmod +x shim/rsync
  (
    export GOROOT=$W/root/usr/lib/go-1.19 PATH=$W/root/usr/lib/go-1.19/bin:$W/shim:$PATH
    export CGO_ENABLED=0 GOPROXY=off GOFLAGS= HOME=$W/home
    cd kubernetes-1.20.2
    make WHAT=cmd/kube-apiserver KUBE_GIT_VERSION=$VERSION KUBE_GIT_TREE_STATE=clean >/dev/null
  )
  mkdir -p "$KUBE_DIR/bin"
  cp kubernetes-1.20.2/_output/bin/kube-apiserver root/usr/bin/etcd "$KUBE_DIR/bin/"
  "$KUBE_DIR/bin/kube-apiserver" --version >&2
}

start() {
  local R=$1 ETCD_PORT=$2 API_PORT=$3
  local BIN=$KUBE_DIR/bin
  rm -rf "$R"; mkdir -p "$R/pki"
  (
    cd "$R/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=flowscope-test-ca 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > ext.cnf
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 -extfile ext.cnf 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  cd "$R"
  echo 'test-admin-token,admin,admin-uid,system:masters' > tokens.csv
  "$BIN/etcd" --data-dir "$R/etcd-data" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync > etcd.log 2>&1 &
  echo $! > etcd.pid
  apiserver "$R" "$ETCD_PORT" "$API_PORT"
}

apiserver() {
  local R=$1 ETCD_PORT=$2 API_PORT=$3
  local BIN=$KUBE_DIR/bin
  cd "$R"
  "$BIN/kube-apiserver" --endpoint-reconciler-type=none --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file=pki/apiserver.crt --tls-private-key-file=pki/apiserver.key --client-ca-file=pki/ca.crt \
    --token-auth-file=tokens.csv --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file=pki/sa.pub \
    --service-account-signing-key-file=pki/sa.key --service-cluster-ip-range=198.19.254.0/24 \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true --cert-dir=certs \
    ${KUBE_APISERVER_ARGS:-} > apiserver.log 2>&1 &
  echo $! > apiserver.pid
  cat > kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority-data: "$(base64 -w0 pki/ca.crt)"}
users:
- name: admin
  user: {token: test-admin-token}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
KC
  for _ in $(seq 1 300); do
    curl -sf --cacert pki/ca.crt -H "Authorization: Bearer test-admin-token" \
      "https://127.0.0.1:$API_PORT/readyz" >/dev/null && return 0
    sleep 0.2
  done
  log "kube-apiserver did not become ready: see $R/apiserver.log"
  return 1
}

case "${1:-}" in
  build) build ;;
  start) shift; start "$@" ;;
  apiserver) shift; apiserver "$@" ;;
  *) echo "usage: $0 build | start|apiserver RUN_DIR ETCD_PORT API_PORT" >&2; exit 2 ;;
esac
