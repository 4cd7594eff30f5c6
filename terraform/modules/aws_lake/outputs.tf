output "bucket_names" {
  value = { for k, b in aws_s3_bucket.layer : k => b.bucket }
}

output "lake_uri" {
  description = "The lake root for LAKEHOUSE_LAKE (layers are buckets: s3://<name>-<layer>/)."
  value       = "s3://${var.name}-{layer}/"
}

output "worker_role_name" {
  value = aws_iam_role.workers.name
}

output "worker_role_arn" {
  value = aws_iam_role.workers.arn
}

output "airflow_bucket_arn" {
  value = aws_s3_bucket.layer["airflow"].arn
}

output "kms_key_arn" {
  value = aws_kms_key.lake.arn
}

output "slack_secret_arn" {
  value = aws_secretsmanager_secret.slack_webhook.arn
}
