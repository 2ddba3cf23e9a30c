# DigitalOcean Cloud Firewalls filter both the public and the VPC interface, and deny
# whatever no rule allows, in both directions. Public: HTTP(S) for app traffic and the
# dashboard, ICMP, and Tailscale's UDP port for direct peer connections. SSH (22), the
# Kubernetes API (6443) and everything else are reachable only through Tailscale, or from
# inside the VPC (node-to-node).
resource "digitalocean_firewall" "k3s" {
  name = "${var.cluster_name}-fw"
  tags = [digitalocean_tag.k3s.id]

  inbound_rule {
    protocol         = "tcp"
    port_range       = "80"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "443"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  inbound_rule {
    protocol         = "udp"
    port_range       = "41641"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  inbound_rule {
    protocol         = "icmp"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  # Node to node inside the VPC: K3s (6443, 10250, flannel VXLAN 8472/udp, etcd 2379-2380).
  inbound_rule {
    protocol         = "tcp"
    port_range       = "1-65535"
    source_addresses = [var.vpc_cidr]
  }

  inbound_rule {
    protocol         = "udp"
    port_range       = "1-65535"
    source_addresses = [var.vpc_cidr]
  }

  inbound_rule {
    protocol         = "icmp"
    source_addresses = [var.vpc_cidr]
  }

  # Without outbound rules a Droplet could reach nothing (images, Tailscale, apps' HTTP).
  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}
