# GCP: the lake on Cloud Storage (modules/gcp_lake) and Cloud Composer 3 (managed Airflow)
# running the same DAGs as the workers' service account. Production only (ADR 0012).
#   make deploy ENV=gcp    make destroy ENV=gcp

terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

module "lake" {
  source        = "../../modules/gcp_lake"
  project       = var.project
  name          = "${var.prefix}-${var.environment}"
  location      = var.region
  force_destroy = var.environment != "prod"
  labels        = { project = "lakehouse", environment = var.environment }
}

# Composer runs its workloads as this account; this role is what Composer requires of it.
resource "google_project_iam_member" "composer_worker" {
  #checkov:skip=CKV_GCP_49:roles/composer.worker is the role Composer 3 requires of its environment's service account
  project = var.project
  role    = "roles/composer.worker"
  member  = "serviceAccount:${module.lake.worker_service_account}"
}

resource "google_composer_environment" "airflow" {
  name    = "${var.prefix}-${var.environment}"
  project = var.project
  region  = var.region

  config {
    environment_size = var.environment_size

    software_config {
      image_version = var.composer_image
      airflow_config_overrides = {
        core-load_examples = "False"
        secrets-backend    = "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend"
      }
      env_variables = {
        # one bucket per layer; the object-storage lake reads the layer into the template
        LAKEHOUSE_LAKE = "gs://${var.prefix}-${var.environment}-{layer}/"
      }
    }

    node_config {
      service_account = module.lake.worker_service_account
    }

    encryption_config {
      kms_key_name = module.lake.kms_key_id
    }
  }

  depends_on = [google_project_iam_member.composer_worker]
}

output "lake_buckets" {
  value = module.lake.bucket_names
}

output "airflow_ui" {
  value = google_composer_environment.airflow.config[0].airflow_uri
}
