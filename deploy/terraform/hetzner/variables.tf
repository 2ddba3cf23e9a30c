variable "hcloud_token" {
  description = "Hetzner Cloud API token (read/write) of the project to create the cluster in."
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
  description = "Prefix of every resource name, and the Hetzner label `cluster`."
  type        = string
  default     = "platform"
}

variable "location" {
  description = "Hetzner location of the servers (fsn1, nbg1, hel1, ...)."
  type        = string
  default     = "fsn1"
}

variable "network_zone" {
  description = "Hetzner network zone that contains the location."
  type        = string
  default     = "eu-central"
}

variable "image_selector" {
  description = "Label selector of the golden image built by deploy/packer (newest match wins)."
  type        = string
  default     = "platform.dev/image=k3s-golden"
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

variable "control_plane_type" {
  description = "Hetzner server type of the K3s servers."
  type        = string
  default     = "cpx31"
}

variable "agent_count" {
  description = "K3s agents (workers)."
  type        = number
  default     = 2
}

variable "agent_type" {
  description = "Hetzner server type of the K3s agents."
  type        = string
  default     = "cpx31"
}

variable "ssh_public_key" {
  description = "Break-glass SSH key for root. Port 22 stays closed to the internet: use Tailscale SSH."
  type        = string
}

variable "private_cidr" {
  description = "IP range of the private network; the nodes' subnet is its first /24."
  type        = string
  default     = "10.0.0.0/16"
}
