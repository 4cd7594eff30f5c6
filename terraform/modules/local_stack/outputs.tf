output "lake_root" {
  value = "${var.root}/lake"
}

output "catalog_path" {
  value = terraform_data.catalog.input.path
}

output "airflow_home" {
  value = terraform_data.airflow_home.input.home
}

output "env_file" {
  description = "Source it (set -a; . FILE) to point the lakehouse CLI and Airflow at this stack."
  value       = terraform_data.env_file.input.path
}
