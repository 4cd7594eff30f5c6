variable "project" {
  type = string
}

variable "region" {
  type    = string
  default = "europe-west1"
}

variable "prefix" {
  description = "Globally unique prefix for bucket names."
  type        = string
}

variable "environment" {
  type    = string
  default = "prod"
}

variable "composer_image" {
  description = "A Cloud Composer 3 image with Airflow 3."
  type        = string
  default     = "composer-3-airflow-3"
}

variable "environment_size" {
  type    = string
  default = "ENVIRONMENT_SIZE_SMALL"
}
