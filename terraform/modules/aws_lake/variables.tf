variable "name" {
  description = "Prefix of every resource (globally unique for buckets), e.g. acme-lakehouse-prod."
  type        = string
}

variable "worker_principals" {
  description = "Services that may assume the workers' role."
  type        = list(string)
  default     = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
}

variable "bronze_ia_days" {
  type    = number
  default = 30
}

variable "bronze_glacier_days" {
  type    = number
  default = 180
}

variable "noncurrent_days" {
  description = "How long superseded object versions are kept (restores after a bad publish)."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets (test environments only)."
  type        = bool
  default     = false
}

variable "tags" {
  type    = map(string)
  default = {}
}
