#!/bin/bash
# K3s binary, its install script (run again by cloud-init at first boot with the node's
# role) and the air-gap images, so a new node starts without pulling K3s's own images.
set -euo pipefail
: "${K3S_VERSION:?K3S_VERSION must be set}"

curl -fsSL https://get.k3s.io -o /usr/local/bin/k3s-install.sh
chmod 0755 /usr/local/bin/k3s-install.sh
INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_SKIP_ENABLE=true INSTALL_K3S_SKIP_START=true \
  /usr/local/bin/k3s-install.sh
# The role (server or agent) is decided at first boot; drop the unit written for a server.
rm -f /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env
systemctl daemon-reload

version_url="${K3S_VERSION//+/%2B}"
mkdir -p /var/lib/rancher/k3s/agent/images
curl -fsSL -o /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst \
  "https://github.com/k3s-io/k3s/releases/download/$version_url/k3s-airgap-images-amd64.tar.zst"
/usr/local/bin/k3s --version
