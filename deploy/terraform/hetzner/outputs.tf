output "server_public_ipv4" {
  description = "Public IPv4 of the K3s servers: point DNS (console.<domain>, platform-runtime.platform.<domain>, *.apps.<domain>) here."
  value       = hcloud_server.control_plane[*].ipv4_address
}

output "agent_public_ipv4" {
  description = "Public IPv4 of the K3s agents (Traefik answers on every node)."
  value       = hcloud_server.agent[*].ipv4_address
}

output "tailscale_hostnames" {
  description = "Tailnet names of the nodes (Tailscale SSH, Kubernetes API on the servers)."
  value       = concat(hcloud_server.control_plane[*].name, hcloud_server.agent[*].name)
}

output "kubeconfig_command" {
  description = "Fetches an admin kubeconfig over Tailscale SSH, pointed at the first server's tailnet name."
  value       = "ssh root@${hcloud_server.control_plane[0].name} cat /etc/rancher/k3s/k3s.yaml | sed 's/127.0.0.1/${hcloud_server.control_plane[0].name}/' > kubeconfig"
}
