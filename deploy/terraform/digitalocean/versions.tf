# K3s on DigitalOcean Droplets, reachable for administration only over Tailscale, with a
# Spaces bucket (S3 API) for Platform's blobs. Providers are pinned to a minor series;
# `terraform init` writes the exact versions to .terraform.lock.hcl, which should be
# committed after the first init.
terraform {
  required_version = ">= 1.6"

  required_providers {
    digitalocean = {
      source = "digitalocean/digitalocean"
      # >= 2.50 for digitalocean_spaces_key (bucket-scoped Spaces keys).
      version = "~> 2.50"
    }
    tailscale = {
      source  = "tailscale/tailscale"
      version = "~> 0.21"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "digitalocean" {
  token = var.do_token
  # Creating the bucket goes through the Spaces (S3) API, which takes a Spaces key, not the
  # API token. The key Platform itself uses is created below, scoped to the bucket.
  spaces_access_id  = var.spaces_access_id
  spaces_secret_key = var.spaces_secret_key
}

provider "tailscale" {
  api_key = var.tailscale_api_key
  tailnet = var.tailnet
}
