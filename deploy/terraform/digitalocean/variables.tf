variable "do_token" {
  description = "DigitalOcean API token (read/write) of the team to create the cluster in."
  type        = string
  sensitive   = true
}

variable "spaces_access_id" {
  description = "An existing Spaces access key ID, used by Terraform only to create the bucket."
  type        = string
  sensitive   = true
}

variable "spaces_secret_key" {
  description = "The secret of spaces_access_id."
  type        = string
  sensitive   = true
}

variable "tailscale_api_key" {
  description = "Tailscale API access token, used only to mint the nodes' auth key."
  type        = string
  sensitive   = true
}

variable "tailnet" {
  description = "Tailscale tailnet name; \"-\" is the default tailnet of the API key."
  type        = string
  default     = "-"
}

variable "cluster_name" {
  description = "Prefix of every resource name, and the Droplets' tag."
  type        = string
  default     = "platform"
}

variable "region" {
  description = "DigitalOcean region of the Droplets, the VPC and the Spaces bucket (one with Spaces: ams3, fra1, nyc3, sfo3, sgp1, syd1, ...)."
  type        = string
  default     = "fra1"
}

variable "vpc_cidr" {
  description = "IP range of the VPC (RFC 1918, /16 to /24). Must not overlap K3s's pod and service CIDRs (10.42.0.0/16, 10.43.0.0/16)."
  type        = string
  default     = "10.20.0.0/20"
}

variable "image" {
  description = "Droplet image: an Ubuntu LTS slug, or the ID of a snapshot that already has K3s and Tailscale (cloud-init installs whatever is missing)."
  type        = string
  default     = "ubuntu-24-04-x64"
}

variable "k3s_version" {
  description = "K3s release installed at first boot (a tag of k3s-io/k3s). Check the current stable channel first."
  type        = string
  default     = "v1.33.5+k3s1"
}

variable "control_plane_count" {
  description = "K3s servers (embedded etcd). 1, or 3 for a highly available control plane."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 3, 5], var.control_plane_count)
    error_message = "Use an odd number of K3s servers (1, 3 or 5) for etcd quorum."
  }
}

variable "control_plane_size" {
  description = "Droplet size of the K3s servers."
  type        = string
  default     = "s-4vcpu-8gb"
}

variable "agent_count" {
  description = "K3s agents (workers)."
  type        = number
  default     = 2
}

variable "agent_size" {
  description = "Droplet size of the K3s agents."
  type        = string
  default     = "s-4vcpu-8gb"
}

variable "ssh_public_key" {
  description = "Break-glass SSH key for root. Port 22 stays closed to the internet: use Tailscale SSH."
  type        = string
}

variable "spaces_bucket" {
  description = "Name of the Spaces bucket for Platform's blobs (unique within the region); the overlay's PLATFORM_BLOB_URL names it."
  type        = string
  default     = "platform-modules"
}
