variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "prefix" {
  description = "Globally unique prefix for bucket names, e.g. acme-lakehouse."
  type        = string
}

variable "environment" {
  type    = string
  default = "prod"
}

variable "airflow_version" {
  description = "An MWAA-supported Airflow 3 release."
  type        = string
  default     = "3.0.6"
}

variable "environment_class" {
  type    = string
  default = "mw1.medium"
}

variable "max_workers" {
  type    = number
  default = 4
}

variable "vpc_id" {
  type = string
}

variable "vpc_cidr" {
  type = string
}

variable "private_subnet_ids" {
  description = "Two private subnets in different availability zones (MWAA requires two)."
  type        = list(string)
}
