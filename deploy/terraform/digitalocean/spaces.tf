# Platform's blob store (PLATFORM_BLOB_URL=s3://<bucket>/blobs in the digitalocean overlay),
# private, with a Spaces key that can read and write this bucket only. Seal the key into
# the overlay's platform-s3 SealedSecret (deploy/README.md).
resource "digitalocean_spaces_bucket" "blobs" {
  name   = var.spaces_bucket
  region = var.region
  acl    = "private"
}

resource "digitalocean_spaces_key" "platform" {
  name = "${var.cluster_name}-blobs"

  grant {
    bucket     = digitalocean_spaces_bucket.blobs.name
    permission = "readwrite"
  }
}
