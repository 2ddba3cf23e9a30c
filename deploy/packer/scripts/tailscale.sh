#!/bin/bash
# Tailscale from its apt repository. The node joins the tailnet at first boot (cloud-init
# runs `tailscale up` with an auth key from Terraform), not here.
set -euo pipefail
# shellcheck source=/dev/null
. /etc/os-release

curl -fsSL "https://pkgs.tailscale.com/stable/ubuntu/$VERSION_CODENAME.noarmor.gpg" \
  -o /usr/share/keyrings/tailscale-archive-keyring.gpg
curl -fsSL "https://pkgs.tailscale.com/stable/ubuntu/$VERSION_CODENAME.tailscale-keyring.list" \
  -o /etc/apt/sources.list.d/tailscale.list
apt-get update -q
apt-get install -y -q tailscale
systemctl enable tailscaled
tailscale version
