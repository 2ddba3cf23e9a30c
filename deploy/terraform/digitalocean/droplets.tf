resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

resource "digitalocean_ssh_key" "admin" {
  name       = "${var.cluster_name}-admin"
  public_key = var.ssh_public_key
}

# The first K3s server initialises the embedded etcd; the others and the agents join it at
# its VPC address, known once it exists (DigitalOcean assigns private addresses itself).
resource "digitalocean_droplet" "first_server" {
  name     = "${var.cluster_name}-server-1"
  region   = var.region
  size     = var.control_plane_size
  image    = var.image
  vpc_uuid = digitalocean_vpc.k3s.id
  ssh_keys = [digitalocean_ssh_key.admin.fingerprint]
  tags     = [digitalocean_tag.k3s.id, "k3s-server"]
  ipv6     = true

  user_data = templatefile("${path.module}/templates/server.yaml.tftpl", {
    hostname           = "${var.cluster_name}-server-1"
    k3s_token          = random_password.k3s_token.result
    k3s_version        = var.k3s_version
    cluster_init       = "true"
    first_server_ip    = ""
    tailscale_auth_key = tailscale_tailnet_key.nodes.key
    traefik_config     = indent(6, file("${path.module}/../../cluster/traefik-config.yaml"))
  })

  # Changing cloud-init or the image must not silently replace a running node.
  lifecycle {
    ignore_changes = [user_data, image]
  }
}

resource "digitalocean_droplet" "server" {
  count    = var.control_plane_count - 1
  name     = "${var.cluster_name}-server-${count.index + 2}"
  region   = var.region
  size     = var.control_plane_size
  image    = var.image
  vpc_uuid = digitalocean_vpc.k3s.id
  ssh_keys = [digitalocean_ssh_key.admin.fingerprint]
  tags     = [digitalocean_tag.k3s.id, "k3s-server"]
  ipv6     = true

  user_data = templatefile("${path.module}/templates/server.yaml.tftpl", {
    hostname           = "${var.cluster_name}-server-${count.index + 2}"
    k3s_token          = random_password.k3s_token.result
    k3s_version        = var.k3s_version
    cluster_init       = "false"
    first_server_ip    = digitalocean_droplet.first_server.ipv4_address_private
    tailscale_auth_key = tailscale_tailnet_key.nodes.key
    traefik_config     = indent(6, file("${path.module}/../../cluster/traefik-config.yaml"))
  })

  lifecycle {
    ignore_changes = [user_data, image]
  }
}

resource "digitalocean_droplet" "agent" {
  count    = var.agent_count
  name     = "${var.cluster_name}-agent-${count.index + 1}"
  region   = var.region
  size     = var.agent_size
  image    = var.image
  vpc_uuid = digitalocean_vpc.k3s.id
  ssh_keys = [digitalocean_ssh_key.admin.fingerprint]
  tags     = [digitalocean_tag.k3s.id, "k3s-agent"]
  ipv6     = true

  user_data = templatefile("${path.module}/templates/agent.yaml.tftpl", {
    hostname           = "${var.cluster_name}-agent-${count.index + 1}"
    k3s_token          = random_password.k3s_token.result
    k3s_version        = var.k3s_version
    first_server_ip    = digitalocean_droplet.first_server.ipv4_address_private
    tailscale_auth_key = tailscale_tailnet_key.nodes.key
  })

  lifecycle {
    ignore_changes = [user_data, image]
  }
}
