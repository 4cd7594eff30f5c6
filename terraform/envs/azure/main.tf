# Azure: the lake on ADLS Gen2 (modules/azure_lake) and Airflow on AKS with the official
# Helm chart (CeleryExecutor), its workers using the lake identity through workload
# identity. Production only (ADR 0012).
#   make deploy ENV=azure    make destroy ENV=azure

terraform {
  required_version = ">= 1.6"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

locals {
  name = "${var.prefix}-${var.environment}"
  tags = { project = "lakehouse", environment = var.environment }
}

resource "azurerm_resource_group" "lakehouse" {
  name     = "${local.name}-rg"
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "lakehouse" {
  name                = "${local.name}-vnet"
  location            = var.location
  resource_group_name = azurerm_resource_group.lakehouse.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "aks" {
  #checkov:skip=CKV2_AZURE_31:AKS manages the node NSG on its own subnet
  name                 = "aks"
  resource_group_name  = azurerm_resource_group.lakehouse.name
  virtual_network_name = azurerm_virtual_network.lakehouse.name
  address_prefixes     = [cidrsubnet(var.vnet_cidr, 4, 0)]
  service_endpoints    = ["Microsoft.Storage", "Microsoft.KeyVault"]
}

module "lake" {
  source              = "../../modules/azure_lake"
  name                = local.name
  resource_group_name = azurerm_resource_group.lakehouse.name
  location            = var.location
  allowed_subnet_ids  = [azurerm_subnet.aks.id]
  tags                = local.tags
}

resource "azurerm_log_analytics_workspace" "aks" {
  name                = "${local.name}-logs"
  location            = var.location
  resource_group_name = azurerm_resource_group.lakehouse.name
  retention_in_days   = 90
  tags                = local.tags
}

resource "azurerm_kubernetes_cluster" "airflow" {
  #checkov:skip=CKV_AZURE_117:Node OS disks use platform-managed keys; the lake data itself is CMK-encrypted in storage
  #checkov:skip=CKV_AZURE_226:Ephemeral OS disks need VM sizes with a large cache; left to sizing
  name                              = "${local.name}-aks"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.lakehouse.name
  dns_prefix                        = local.name
  kubernetes_version                = var.kubernetes_version
  sku_tier                          = "Standard"
  private_cluster_enabled           = true
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  automatic_upgrade_channel         = "stable"
  node_os_upgrade_channel           = "NodeImage"
  tags                              = local.tags

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled = true
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = var.node_size
    vnet_subnet_id               = azurerm_subnet.aks.id
    auto_scaling_enabled         = true
    min_count                    = 2
    max_count                    = var.max_nodes
    max_pods                     = 50
    host_encryption_enabled      = true
    only_critical_addons_enabled = true
    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin = "azure"
    network_policy = "azure"
  }

  oms_agent {
    log_analytics_workspace_id = azurerm_log_analytics_workspace.aks.id
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "workers" {
  name                    = "workers"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.airflow.id
  vm_size                 = var.node_size
  vnet_subnet_id          = azurerm_subnet.aks.id
  auto_scaling_enabled    = true
  min_count               = 1
  max_count               = var.max_nodes
  max_pods                = 50
  host_encryption_enabled = true
  tags                    = local.tags
}

# The workers' Kubernetes service account is federated to the lake identity.
resource "azurerm_federated_identity_credential" "workers" {
  name                = "airflow-workers"
  resource_group_name = azurerm_resource_group.lakehouse.name
  parent_id           = module.lake.worker_identity_id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.airflow.oidc_issuer_url
  subject             = "system:serviceaccount:airflow:airflow-worker"
}

provider "helm" {
  kubernetes = {
    host                   = azurerm_kubernetes_cluster.airflow.kube_config[0].host
    cluster_ca_certificate = base64decode(azurerm_kubernetes_cluster.airflow.kube_config[0].cluster_ca_certificate)
  }
}

resource "helm_release" "airflow" {
  name             = "airflow"
  namespace        = "airflow"
  create_namespace = true
  repository       = "https://airflow.apache.org"
  chart            = "airflow"
  version          = var.airflow_chart_version
  values = [yamlencode({
    executor = "CeleryExecutor"
    images   = { airflow = { repository = var.image_repository, tag = var.image_tag } }
    workers = {
      replicas = 2
      serviceAccount = {
        name        = "airflow-worker"
        annotations = { "azure.workload.identity/client-id" = module.lake.worker_client_id }
      }
      labels = { "azure.workload.identity/use" = "true" }
    }
    env = [
      { name = "LAKEHOUSE_LAKE", value = "abfs://{layer}@${module.lake.storage_account}.dfs.core.windows.net/" },
      { name = "AIRFLOW__SECRETS__BACKEND", value = "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend" },
    ]
  })]
}

output "lake_filesystems" {
  value = module.lake.filesystems
}
