#!/usr/bin/env bash
# Builds a real etcd and kube-apiserver from Go modules into a cache folder,
# for the Kubernetes integration tests (internal/kubetest). No cluster, no
# Docker: the same approach as controller-runtime's envtest. Reused when
# already built; about 5 minutes on a cold module cache.
#
# Usage: test/kube/build.sh            (prints the folder it built into)
set -euo pipefail
K8S_VERSION=1.37.2
STAGING=0.37.2
ETCD_VERSION=3.6.16
out="${ZMESH_KUBE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/zmesh/kube-v${K8S_VERSION}}"
mkdir -p "$out"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off

if [ ! -x "$out/etcd" ]; then
  mkdir -p "$work/etcd"
  cat > "$work/etcd/go.mod" <<EOM
module etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
EOM
  cat > "$work/etcd/main.go" <<'EOM'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOM
  (cd "$work/etcd" && go mod tidy >/dev/null 2>&1 && go build -trimpath -o "$out/etcd" .) >&2
fi

if [ ! -x "$out/kube-apiserver" ]; then
  mkdir -p "$work/apiserver"
  {
    echo "module kubeapiserver-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    echo "replace ("
    for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
      cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt \
      kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
      mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming; do
      echo "	k8s.io/$m => k8s.io/$m v${STAGING}"
    done
    echo ")"
  } > "$work/apiserver/go.mod"
  cat > "$work/apiserver/tools.go" <<'EOM'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOM
  (cd "$work/apiserver" && go mod tidy >/dev/null 2>&1 && go build -trimpath -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) >&2
fi
echo "$out"
