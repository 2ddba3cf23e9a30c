#!/bin/bash
# gVisor (runsc) as an extra containerd runtime for K3s, used by pods with
# runtimeClassName: gvisor (deploy/components/gvisor). Containers without it keep runc.
set -euo pipefail
: "${GVISOR_RELEASE:=release}"

curl -fsSL https://gvisor.dev/archive.key | gpg --dearmor -o /usr/share/keyrings/gvisor-archive-keyring.gpg
echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/gvisor-archive-keyring.gpg] https://storage.googleapis.com/gvisor/releases $GVISOR_RELEASE main" \
  > /etc/apt/sources.list.d/gvisor.list
apt-get update -q
apt-get install -y -q runsc
runsc --version

# K3s >= 1.31.6 / 1.32.2 runs containerd 2 and renders config-v3.toml.tmpl on top of its
# own base configuration; this adds the `runsc` handler the RuntimeClass names.
mkdir -p /var/lib/rancher/k3s/agent/etc/containerd
cat > /var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl <<'TOML'
{{ template "base" . }}

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
TOML
