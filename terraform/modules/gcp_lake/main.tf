# The lake on Cloud Storage: one bucket per layer (+ DAGs and access logs), CMEK-encrypted,
# versioned, uniform access, public access prevented; bronze ages into colder classes. A
# service account for the Airflow workers with access to these buckets only, and a Secret
# Manager secret for the Slack webhook. Cloud Storage accepts HTTPS only, so no TLS policy.

terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }
}

data "google_project" "this" {
  project_id = var.project
}

data "google_storage_project_service_account" "gcs" {
  project = var.project
}

locals {
  buckets = toset(["bronze", "silver", "gold", "airflow", "access-logs"])
  logged  = setsubtract(local.buckets, ["access-logs"])
}

resource "google_kms_key_ring" "lake" {
  name     = "${var.name}-lake"
  project  = var.project
  location = var.location
}

resource "google_kms_crypto_key" "lake" {
  name            = "${var.name}-lake"
  key_ring        = google_kms_key_ring.lake.id
  rotation_period = "7776000s" # 90 days
  lifecycle {
    prevent_destroy = true
  }
}

# Cloud Storage and Secret Manager encrypt with the key on the project's behalf.
resource "google_kms_crypto_key_iam_member" "gcs" {
  crypto_key_id = google_kms_crypto_key.lake.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_kms_crypto_key_iam_member" "secrets" {
  crypto_key_id = google_kms_crypto_key.lake.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
}

resource "google_storage_bucket" "layer" {
  #checkov:skip=CKV_GCP_62:access-logs receives the other buckets' usage logs and cannot log into itself
  #checkov:skip=CKV_GCP_63:Only the lake buckets get a logging block (dynamic, skipped for access-logs); none logs to itself
  for_each                    = local.buckets
  name                        = "${var.name}-${each.key}"
  project                     = var.project
  location                    = var.location
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = merge(var.labels, { layer = each.key })

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.lake.id
  }

  dynamic "logging" {
    for_each = each.key == "access-logs" ? [] : [1]
    content {
      log_bucket        = "${var.name}-access-logs"
      log_object_prefix = each.key
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.key == "bronze" ? { NEARLINE = var.bronze_nearline_days, COLDLINE = var.bronze_coldline_days } : {}
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type          = "SetStorageClass"
        storage_class = lifecycle_rule.key
      }
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.gcs]
}

resource "google_service_account" "workers" {
  project      = var.project
  account_id   = "${var.name}-workers"
  display_name = "Lakehouse Airflow workers"
}

# Bucket-scoped grants: the workers can touch these buckets and nothing else in the project.
resource "google_storage_bucket_iam_member" "workers" {
  for_each = local.logged
  bucket   = google_storage_bucket.layer[each.key].name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.workers.email}"
}

resource "google_secret_manager_secret" "slack_webhook" {
  project   = var.project
  secret_id = "${var.name}-slack-webhook"
  labels    = var.labels

  replication {
    user_managed {
      replicas {
        location = var.location
        customer_managed_encryption {
          kms_key_name = google_kms_crypto_key.lake.id
        }
      }
    }
  }
  depends_on = [google_kms_crypto_key_iam_member.secrets]
}

resource "google_secret_manager_secret_iam_member" "workers" {
  project   = var.project
  secret_id = google_secret_manager_secret.slack_webhook.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.workers.email}"
}
