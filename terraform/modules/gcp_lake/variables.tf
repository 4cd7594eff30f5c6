variable "project" {
  type = string
}

variable "name" {
  description = "Prefix of every resource (globally unique for buckets)."
  type        = string
}

variable "location" {
  description = "A region (the key ring, the buckets and the secret live there)."
  type        = string
  default     = "europe-west1"
}

variable "bronze_nearline_days" {
  type    = number
  default = 30
}

variable "bronze_coldline_days" {
  type    = number
  default = 180
}

variable "noncurrent_days" {
  type    = number
  default = 30
}

variable "force_destroy" {
  type    = bool
  default = false
}

variable "labels" {
  type    = map(string)
  default = {}
}
