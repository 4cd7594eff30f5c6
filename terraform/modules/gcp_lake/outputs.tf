output "bucket_names" {
  value = { for k, b in google_storage_bucket.layer : k => b.name }
}

output "worker_service_account" {
  value = google_service_account.workers.email
}

output "kms_key_id" {
  value = google_kms_crypto_key.lake.id
}

output "slack_secret_id" {
  value = google_secret_manager_secret.slack_webhook.id
}
