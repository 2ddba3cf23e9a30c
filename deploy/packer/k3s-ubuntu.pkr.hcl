# Golden image for K3s nodes on Hetzner Cloud: Ubuntu LTS with K3s (binary, install script
# and air-gap images), Tailscale and gVisor installed but not started. Terraform
# (deploy/terraform/hetzner) selects the newest snapshot by its label and configures the
# node with cloud-init at first boot.
#
#   cd deploy/packer && packer init . && packer build .
#   (HCLOUD_TOKEN in the environment)

packer {
  required_plugins {
    hcloud = {
      source  = "github.com/hetznercloud/hcloud"
      version = ">= 1.6.0"
    }
  }
}

variable "hcloud_token" {
  type      = string
  sensitive = true
  default   = env("HCLOUD_TOKEN")
}

variable "base_image" {
  type        = string
  default     = "ubuntu-24.04"
  description = "Hetzner system image to start from."
}

variable "location" {
  type    = string
  default = "fsn1"
}

variable "server_type" {
  type        = string
  default     = "cpx21"
  description = "Only used while building; snapshots run on any x86 type at least this large on disk."
}

variable "k3s_version" {
  type        = string
  default     = "v1.33.5+k3s1"
  description = "K3s release (a tag of k3s-io/k3s). Check the current stable channel before building."
}

variable "gvisor_release" {
  type        = string
  default     = "release"
  description = "gVisor apt channel: release (latest stable) or a dated release such as 20250113.0."
}

locals {
  build_time = formatdate("YYYYMMDD-hhmm", timestamp())
  # Label values may not contain "+".
  k3s_label = replace(var.k3s_version, "+", "-")
}

source "hcloud" "k3s" {
  token         = var.hcloud_token
  image         = var.base_image
  location      = var.location
  server_type   = var.server_type
  ssh_username  = "root"
  snapshot_name = "k3s-golden-${local.k3s_label}-${local.build_time}"
  snapshot_labels = {
    "platform.dev/image" = "k3s-golden"
    "k3s-version"        = local.k3s_label
    "base-image"         = var.base_image
  }
}

build {
  sources = ["source.hcloud.k3s"]

  provisioner "shell" {
    environment_vars = [
      "K3S_VERSION=${var.k3s_version}",
      "GVISOR_RELEASE=${var.gvisor_release}",
      "DEBIAN_FRONTEND=noninteractive",
    ]
    scripts = [
      "${path.root}/scripts/base.sh",
      "${path.root}/scripts/k3s.sh",
      "${path.root}/scripts/tailscale.sh",
      "${path.root}/scripts/gvisor.sh",
      "${path.root}/scripts/cleanup.sh",
    ]
  }
}
