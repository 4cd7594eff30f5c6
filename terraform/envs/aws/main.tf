# AWS: the lake on S3 (modules/aws_lake) and Amazon MWAA (managed Airflow, Celery workers)
# running the same DAGs. Production; development and tests stay local (ADR 0012).
#   make deploy ENV=aws    make destroy ENV=aws

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "lakehouse", environment = var.environment }
  }
}

data "aws_caller_identity" "current" {}

module "lake" {
  source        = "../../modules/aws_lake"
  name          = "${var.prefix}-${var.environment}"
  force_destroy = var.environment != "prod"
}

locals {
  mwaa_name = "${var.prefix}-${var.environment}"
  account   = data.aws_caller_identity.current.account_id
}

# What MWAA itself needs from its execution role: its own log groups and Celery queue.
data "aws_iam_policy_document" "mwaa" {
  statement {
    sid       = "AirflowLogs"
    actions   = ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents", "logs:GetLogEvents", "logs:GetLogRecord", "logs:GetLogGroupFields", "logs:GetQueryResults", "logs:DescribeLogGroups"]
    resources = ["arn:aws:logs:${var.region}:${local.account}:log-group:airflow-${local.mwaa_name}-*"]
  }
  statement {
    sid       = "CeleryQueue"
    actions   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:SendMessage"]
    resources = ["arn:aws:sqs:${var.region}:*:airflow-celery-*"]
  }
  statement {
    sid       = "PublishMetrics"
    actions   = ["airflow:PublishMetrics"]
    resources = ["arn:aws:airflow:${var.region}:${local.account}:environment/${local.mwaa_name}"]
  }
}

resource "aws_iam_role_policy" "mwaa" {
  name   = "mwaa-runtime"
  role   = module.lake.worker_role_name
  policy = data.aws_iam_policy_document.mwaa.json
}

resource "aws_security_group" "mwaa" {
  name        = "${local.mwaa_name}-mwaa"
  description = "MWAA components talk to each other; egress stays inside the VPC (endpoints)"
  vpc_id      = var.vpc_id

  ingress {
    description = "MWAA components among themselves"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }
  egress {
    description = "VPC endpoints (S3, SQS, logs, secrets) and the database"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_mwaa_environment" "airflow" {
  name                  = local.mwaa_name
  airflow_version       = var.airflow_version
  environment_class     = var.environment_class
  max_workers           = var.max_workers
  execution_role_arn    = module.lake.worker_role_arn
  source_bucket_arn     = module.lake.airflow_bucket_arn
  dag_s3_path           = "dags/"
  requirements_s3_path  = "requirements.txt"
  kms_key               = module.lake.kms_key_arn
  webserver_access_mode = "PRIVATE_ONLY"

  airflow_configuration_options = {
    "core.load_examples"     = "False"
    "secrets.backend"        = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    "secrets.backend_kwargs" = jsonencode({ connections_prefix = "${var.prefix}-${var.environment}/connections" })
  }

  network_configuration {
    security_group_ids = [aws_security_group.mwaa.id]
    subnet_ids         = var.private_subnet_ids
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = "INFO"
    }
    scheduler_logs {
      enabled   = true
      log_level = "INFO"
    }
    task_logs {
      enabled   = true
      log_level = "INFO"
    }
    webserver_logs {
      enabled   = true
      log_level = "WARNING"
    }
    worker_logs {
      enabled   = true
      log_level = "INFO"
    }
  }
}

output "lake_buckets" {
  value = module.lake.bucket_names
}

output "airflow_ui" {
  value = aws_mwaa_environment.airflow.webserver_url
}
