output "server_public_ipv4" {
  description = "Public IPv4 of the K3s servers: point DNS (console.<domain>, platform-runtime.platform.<domain>, *.apps.<domain>) here."
  value       = concat([digitalocean_droplet.first_server.ipv4_address], digitalocean_droplet.server[*].ipv4_address)
}

output "agent_public_ipv4" {
  description = "Public IPv4 of the K3s agents (Traefik answers on every node)."
  value       = digitalocean_droplet.agent[*].ipv4_address
}

output "tailscale_hostnames" {
  description = "Tailnet names of the nodes (Tailscale SSH, Kubernetes API on the servers)."
  value       = concat([digitalocean_droplet.first_server.name], digitalocean_droplet.server[*].name, digitalocean_droplet.agent[*].name)
}

output "kubeconfig_command" {
  description = "Fetches an admin kubeconfig over Tailscale SSH, pointed at the first server's tailnet name."
  value       = "ssh root@${digitalocean_droplet.first_server.name} cat /etc/rancher/k3s/k3s.yaml | sed 's/127.0.0.1/${digitalocean_droplet.first_server.name}/' > kubeconfig"
}

output "spaces_endpoint" {
  description = "S3 endpoint of the bucket's region: AWS_ENDPOINT in the digitalocean overlay."
  value       = "https://${digitalocean_spaces_bucket.blobs.region}.digitaloceanspaces.com"
}

output "spaces_bucket" {
  description = "Bucket for PLATFORM_BLOB_URL (s3://<bucket>/blobs)."
  value       = digitalocean_spaces_bucket.blobs.name
}

output "spaces_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for the platform-s3 SealedSecret (read/write on the bucket only)."
  value       = digitalocean_spaces_key.platform.access_key
  sensitive   = true
}

output "spaces_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for the platform-s3 SealedSecret."
  value       = digitalocean_spaces_key.platform.secret_key
  sensitive   = true
}
