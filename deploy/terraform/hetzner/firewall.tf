# Applies to the servers' public interfaces only; the private network is not filtered.
# Public: HTTP(S) for app traffic and the dashboard, ICMP, and Tailscale's UDP port for
# direct peer connections. SSH (22), the Kubernetes API (6443) and everything else are
# reachable only through Tailscale.
resource "hcloud_firewall" "k3s" {
  name   = "${var.cluster_name}-fw"
  labels = local.labels

  rule {
    description = "HTTP (Traefik)"
    direction   = "in"
    protocol    = "tcp"
    port        = "80"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "HTTPS (Traefik)"
    direction   = "in"
    protocol    = "tcp"
    port        = "443"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "Tailscale direct connections"
    direction   = "in"
    protocol    = "udp"
    port        = "41641"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "ICMP"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }
}
