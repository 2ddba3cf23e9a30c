#!/bin/bash
# Base system for a K3s node: updates, the few tools K3s and its local storage need,
# kernel settings for Kubernetes networking, and unattended security updates.
set -euo pipefail

cloud-init status --wait >/dev/null || true
apt-get update -q
apt-get -y -q -o Dpkg::Options::=--force-confold dist-upgrade
apt-get install -y -q --no-install-recommends \
  ca-certificates curl gnupg jq iptables nftables conntrack open-iscsi \
  unattended-upgrades apt-transport-https

cat > /etc/sysctl.d/90-kubernetes.conf <<'SYSCTL'
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
fs.inotify.max_user_instances = 1024
fs.inotify.max_user_watches = 1048576
SYSCTL
cat > /etc/modules-load.d/kubernetes.conf <<'MODULES'
br_netfilter
overlay
MODULES

# Security updates only, without automatic reboots (drain nodes and reboot deliberately).
cat > /etc/apt/apt.conf.d/52platform-unattended <<'APT'
Unattended-Upgrade::Automatic-Reboot "false";
APT
systemctl enable unattended-upgrades
