#!/bin/bash
# Leaves nothing host-specific in the snapshot: cloud-init runs again on each new server,
# which gets its own machine id and SSH host keys.
set -euo pipefail

apt-get -y -q autoremove --purge
apt-get -q clean
rm -rf /var/lib/apt/lists/*
cloud-init clean --logs --seed
rm -f /etc/ssh/ssh_host_*
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /root/.bash_history
sync
