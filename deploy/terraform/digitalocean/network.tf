locals {
  tag = "${var.cluster_name}-k3s"
}

# Node-to-node traffic (K3s API, kubelet, flannel VXLAN, etcd) stays in this VPC; the
# Droplets get their private addresses from it (read at first boot from the metadata
# service, as DigitalOcean does not let Terraform choose them).
resource "digitalocean_vpc" "k3s" {
  name        = "${var.cluster_name}-vpc"
  region      = var.region
  ip_range    = var.vpc_cidr
  description = "K3s nodes of ${var.cluster_name}"
}

# The firewall applies to every Droplet with this tag.
resource "digitalocean_tag" "k3s" {
  name = local.tag
}
