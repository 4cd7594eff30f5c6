# Local environment: the embedded stack on this machine (no cloud, no registry providers).
#   make deploy ENV=local     # terraform init + apply
#   make destroy ENV=local    # terraform destroy, then the local state is removed

terraform {
  required_version = ">= 1.6"
}

variable "root" {
  description = "Where the stack lives (absolute). Default: <checkout>/data/envs/local."
  type        = string
  default     = ""
}

variable "python" {
  description = "The project's Python (default: <checkout>/.venv/bin/python)."
  type        = string
  default     = ""
}

variable "project" {
  description = "The lakehouse checkout (default: the one holding this file)."
  type        = string
  default     = ""
}

locals {
  project = var.project != "" ? var.project : abspath("${path.module}/../../..")
}

module "stack" {
  source  = "../../modules/local_stack"
  root    = var.root != "" ? var.root : "${local.project}/data/envs/local"
  project = local.project
  python  = var.python != "" ? var.python : "${local.project}/.venv/bin/python"
}

output "lake_root" {
  value = module.stack.lake_root
}

output "catalog_path" {
  value = module.stack.catalog_path
}

output "airflow_home" {
  value = module.stack.airflow_home
}

output "env_file" {
  value = module.stack.env_file
}
