variable "name" {
  description = "Prefix of every resource (lowercase letters, digits, dashes)."
  type        = string
}

variable "resource_group_name" {
  type = string
}

variable "location" {
  type    = string
  default = "westeurope"
}

variable "allowed_subnet_ids" {
  description = "Subnets (with the Microsoft.Storage and Microsoft.KeyVault service endpoints) that may reach the lake."
  type        = list(string)
}

variable "key_expiration_date" {
  description = "Expiry of the lake key and the secret (RFC 3339); rotation renews the key before it."
  type        = string
  default     = "2027-12-31T00:00:00Z"
}

variable "soft_delete_days" {
  type    = number
  default = 30
}

variable "bronze_cool_days" {
  type    = number
  default = 30
}

variable "bronze_archive_days" {
  type    = number
  default = 180
}

variable "tags" {
  type    = map(string)
  default = {}
}
