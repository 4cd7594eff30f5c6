output "storage_account" {
  value = azurerm_storage_account.lake.name
}

output "filesystems" {
  value = { for k, f in azurerm_storage_data_lake_gen2_filesystem.layer : k => f.name }
}

output "worker_identity_id" {
  value = azurerm_user_assigned_identity.workers.id
}

output "worker_client_id" {
  value = azurerm_user_assigned_identity.workers.client_id
}

output "key_vault_uri" {
  value = azurerm_key_vault.lake.vault_uri
}
