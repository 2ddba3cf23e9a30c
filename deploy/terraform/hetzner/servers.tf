# The golden image from deploy/packer: Ubuntu with K3s, Tailscale and gVisor installed but
# not started; cloud-init configures and starts them.
data "hcloud_image" "golden" {
  with_selector     = var.image_selector
  most_recent       = true
  with_architecture = "x86"
}

resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

resource "hcloud_ssh_key" "admin" {
  name       = "${var.cluster_name}-admin"
  public_key = var.ssh_public_key
  labels     = local.labels
}

# Spread servers over different physical hosts.
resource "hcloud_placement_group" "k3s" {
  name   = "${var.cluster_name}-spread"
  type   = "spread"
  labels = local.labels
}

resource "hcloud_server" "control_plane" {
  count              = var.control_plane_count
  name               = "${var.cluster_name}-server-${count.index + 1}"
  server_type        = var.control_plane_type
  image              = data.hcloud_image.golden.id
  location           = var.location
  ssh_keys           = [hcloud_ssh_key.admin.id]
  firewall_ids       = [hcloud_firewall.k3s.id]
  placement_group_id = hcloud_placement_group.k3s.id
  labels             = merge(local.labels, { role = "k3s-server" })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.k3s.id
    ip         = local.server_ips[count.index]
  }

  user_data = templatefile("${path.module}/templates/server.yaml.tftpl", {
    hostname           = "${var.cluster_name}-server-${count.index + 1}"
    node_ip            = local.server_ips[count.index]
    k3s_token          = random_password.k3s_token.result
    cluster_init       = count.index == 0 ? "true" : "false"
    first_server_ip    = local.server_ips[0]
    tailscale_auth_key = tailscale_tailnet_key.nodes.key
    traefik_config     = indent(6, file("${path.module}/../../cluster/traefik-config.yaml"))
  })

  # Changing cloud-init or the image must not silently replace a running node.
  lifecycle {
    ignore_changes = [user_data, image]
  }

  depends_on = [hcloud_network_subnet.nodes]
}

resource "hcloud_server" "agent" {
  count              = var.agent_count
  name               = "${var.cluster_name}-agent-${count.index + 1}"
  server_type        = var.agent_type
  image              = data.hcloud_image.golden.id
  location           = var.location
  ssh_keys           = [hcloud_ssh_key.admin.id]
  firewall_ids       = [hcloud_firewall.k3s.id]
  placement_group_id = hcloud_placement_group.k3s.id
  labels             = merge(local.labels, { role = "k3s-agent" })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.k3s.id
    ip         = local.agent_ips[count.index]
  }

  user_data = templatefile("${path.module}/templates/agent.yaml.tftpl", {
    hostname           = "${var.cluster_name}-agent-${count.index + 1}"
    node_ip            = local.agent_ips[count.index]
    k3s_token          = random_password.k3s_token.result
    first_server_ip    = local.server_ips[0]
    tailscale_auth_key = tailscale_tailnet_key.nodes.key
  })

  lifecycle {
    ignore_changes = [user_data, image]
  }

  depends_on = [hcloud_network_subnet.nodes, hcloud_server.control_plane]
}
