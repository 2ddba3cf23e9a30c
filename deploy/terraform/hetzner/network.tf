locals {
  labels = {
    cluster    = var.cluster_name
    managed-by = "terraform"
  }
  subnet_cidr = cidrsubnet(var.private_cidr, 8, 1)
  # Fixed private addresses: servers from .10, agents from .100.
  server_ips = [for i in range(var.control_plane_count) : cidrhost(local.subnet_cidr, 10 + i)]
  agent_ips  = [for i in range(var.agent_count) : cidrhost(local.subnet_cidr, 100 + i)]
}

# Node-to-node traffic (K3s API, kubelet, flannel VXLAN, etcd) stays on this network.
resource "hcloud_network" "k3s" {
  name     = "${var.cluster_name}-net"
  ip_range = var.private_cidr
  labels   = local.labels
}

resource "hcloud_network_subnet" "nodes" {
  network_id   = hcloud_network.k3s.id
  type         = "cloud"
  network_zone = var.network_zone
  ip_range     = local.subnet_cidr
}
