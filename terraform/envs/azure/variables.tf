variable "subscription_id" {
  type = string
}

variable "prefix" {
  description = "Lowercase prefix (storage account names allow letters and digits only)."
  type        = string
}

variable "environment" {
  type    = string
  default = "prod"
}

variable "location" {
  type    = string
  default = "westeurope"
}

variable "vnet_cidr" {
  type    = string
  default = "10.40.0.0/16"
}

variable "kubernetes_version" {
  type    = string
  default = "1.33"
}

variable "node_size" {
  type    = string
  default = "Standard_D4ds_v5"
}

variable "max_nodes" {
  type    = number
  default = 4
}

variable "airflow_chart_version" {
  description = "The official Apache Airflow Helm chart release (Airflow 3 support)."
  type        = string
  default     = "1.18.0"
}

variable "image_repository" {
  description = "Where the lakehouse image (Dockerfile) is pushed, e.g. an Azure Container Registry."
  type        = string
}

variable "image_tag" {
  type = string
}
