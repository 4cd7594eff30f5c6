# The lake on S3: one bucket per layer (+ one for Airflow's DAGs), KMS-encrypted, versioned,
# private, TLS-only; bronze ages into cheaper storage. A least-privilege role for the
# Airflow workers and a Secrets Manager secret for the Slack webhook.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

data "aws_caller_identity" "current" {}

locals {
  buckets = toset(["bronze", "silver", "gold", "airflow", "access-logs"])
  # the lake and DAG buckets log their access into access-logs (which cannot log into itself)
  logged = setsubtract(local.buckets, ["access-logs"])
  lake   = { for k in local.logged : k => aws_s3_bucket.layer[k].arn }
}

resource "aws_kms_key" "lake" {
  description             = "${var.name}: lake, logs and secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_s3_bucket" "layer" {
  #checkov:skip=CKV_AWS_144:Single-region lake; bronze is the system of record and is versioned, not replicated
  #checkov:skip=CKV2_AWS_62:The pipeline is scheduled by Airflow; no consumer listens for object events
  #checkov:skip=CKV_AWS_18:Every bucket but access-logs logs there (aws_s3_bucket_logging); access-logs cannot log into itself
  for_each      = local.buckets
  bucket        = "${var.name}-${each.key}"
  force_destroy = var.force_destroy
  tags          = merge(var.tags, { layer = each.key })
}

resource "aws_s3_bucket_logging" "layer" {
  for_each      = local.logged
  bucket        = aws_s3_bucket.layer[each.key].id
  target_bucket = aws_s3_bucket.layer["access-logs"].id
  target_prefix = "${each.key}/"
}

resource "aws_s3_bucket_versioning" "all" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.layer[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "all" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.layer[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "all" {
  for_each                = local.buckets
  bucket                  = aws_s3_bucket.layer[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Bronze (raw, immutable, rarely read after silver is built) ages into cheaper classes;
# every bucket drops old versions and abandoned multipart uploads.
resource "aws_s3_bucket_lifecycle_configuration" "all" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.layer[each.key].id

  rule {
    id     = "tidy"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_days
    }
  }

  dynamic "rule" {
    for_each = each.key == "bronze" ? [1] : []
    content {
      id     = "bronze-tiering"
      status = "Enabled"
      filter {}
      abort_incomplete_multipart_upload {
        days_after_initiation = 7
      }
      transition {
        days          = var.bronze_ia_days
        storage_class = "STANDARD_IA"
      }
      transition {
        days          = var.bronze_glacier_days
        storage_class = "GLACIER_IR"
      }
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.layer[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyNonTLS"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.layer[each.key].arn, "${aws_s3_bucket.layer[each.key].arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.all]
}

resource "aws_secretsmanager_secret" "slack_webhook" {
  #checkov:skip=CKV2_AWS_57:A Slack webhook URL is rotated in Slack by a person; there is no rotation Lambda to call
  name                    = "${var.name}/slack-webhook"
  description             = "Slack incoming webhook for lakehouse alerts (value set out of band)"
  kms_key_id              = aws_kms_key.lake.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = var.worker_principals
    }
  }
}

resource "aws_iam_role" "workers" {
  name               = "${var.name}-airflow-workers"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# Only these buckets, this key and this secret; no wildcard action or resource.
data "aws_iam_policy_document" "workers" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = values(local.lake)
  }
  statement {
    sid       = "ReadWriteLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [for arn in values(local.lake) : "${arn}/*"]
  }
  statement {
    sid       = "UseLakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.lake.arn]
  }
  statement {
    sid       = "ReadSlackWebhook"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.slack_webhook.arn]
  }
}

resource "aws_iam_role_policy" "workers" {
  name   = "lakehouse-lake-access"
  role   = aws_iam_role.workers.id
  policy = data.aws_iam_policy_document.workers.json
}
