variable "root" {
  description = "Absolute directory that holds the lake, the catalog and the Airflow home."
  type        = string
  validation {
    condition     = startswith(var.root, "/") && length(trimspace(var.root)) > 1
    error_message = "root must be an absolute path other than /."
  }
}

variable "project" {
  description = "Absolute path of the lakehouse checkout (DAGs, configs, code)."
  type        = string
}

variable "python" {
  description = "The Python of the project's environment (has airflow and lakehouse installed)."
  type        = string
}

variable "domain" {
  description = "Domain whose catalog is created."
  type        = string
  default     = "retail"
}
