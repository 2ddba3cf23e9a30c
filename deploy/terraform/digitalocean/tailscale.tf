# One pre-authorized, reusable auth key for this cluster's nodes. Nodes join as
# tag:k3s (declare `"tagOwners": {"tag:k3s": ["autogroup:admin"]}` in the tailnet policy)
# and are not ephemeral, so they keep their names across reboots.
resource "tailscale_tailnet_key" "nodes" {
  reusable      = true
  ephemeral     = false
  preauthorized = true
  expiry        = 7776000 # 90 days; only needed while nodes are being created
  description   = "${var.cluster_name} k3s nodes"
  tags          = ["tag:k3s"]
}
