# The embedded stack on one machine, with Terraform's built-in provider only (terraform_data):
# lake folders per layer, an Airflow home with its SQLite metadata database, an env file
# that points the lakehouse at them, and an (empty) DuckDB catalog. Destroy removes them.

terraform {
  required_version = ">= 1.6"
}

locals {
  layers  = ["bronze", "silver", "gold", "_state"]
  env_doc = <<-EOT
    LAKEHOUSE_HOME=${var.root}
    LAKEHOUSE_LAKE=${var.root}/lake
    LAKEHOUSE_CATALOG=${var.root}/lakehouse.duckdb
    LAKEHOUSE_ALERT_STATE=${var.root}/alerts
    AIRFLOW_HOME=${var.root}/airflow
    AIRFLOW__CORE__LOAD_EXAMPLES=False
    AIRFLOW__CORE__DAGS_FOLDER=${var.project}/dags
  EOT
}

# Created first, removed last (once everything in it is gone; anything else is left alone).
resource "terraform_data" "root" {
  input = { root = var.root, lake = "${var.root}/lake" }

  provisioner "local-exec" {
    command = "mkdir -p -- '${self.input.lake}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rmdir -- '${self.input.lake}' 2>/dev/null; rmdir -- '${self.input.root}' 2>/dev/null; true"
  }
}

resource "terraform_data" "lake_layer" {
  for_each   = toset(local.layers)
  input      = "${var.root}/lake/${each.key}"
  depends_on = [terraform_data.root]

  provisioner "local-exec" {
    command = "mkdir -p -- '${self.input}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -rf -- '${self.input}'"
  }
}

resource "terraform_data" "env_file" {
  input      = { path = "${var.root}/lakehouse.env", body = local.env_doc }
  depends_on = [terraform_data.root]

  provisioner "local-exec" {
    command = "mkdir -p -- '${dirname(self.input.path)}' && printf '%s' \"$BODY\" > '${self.input.path}'"
    environment = {
      BODY = self.input.body
    }
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f -- '${self.input.path}'"
  }
}

# The Airflow home and its metadata database (SQLite: the embedded default).
resource "terraform_data" "airflow_home" {
  input      = { home = "${var.root}/airflow", python = var.python, project = var.project }
  depends_on = [terraform_data.env_file]

  provisioner "local-exec" {
    command     = "mkdir -p -- '${self.input.home}' && '${self.input.python}' -m airflow db migrate > '${self.input.home}/migrate.log' 2>&1"
    working_dir = self.input.project
    environment = {
      AIRFLOW_HOME                 = self.input.home
      AIRFLOW__CORE__LOAD_EXAMPLES = "False"
    }
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -rf -- '${self.input.home}'"
  }
}

# An empty catalog, so analysts' tools can connect before the first run publishes.
resource "terraform_data" "catalog" {
  input      = { path = "${var.root}/lakehouse.duckdb", python = var.python, project = var.project, lake = "${var.root}/lake" }
  depends_on = [terraform_data.lake_layer]

  provisioner "local-exec" {
    command     = "'${self.input.python}' -m lakehouse.cli --domain '${var.domain}' catalog"
    working_dir = self.input.project
    environment = {
      LAKEHOUSE_HOME    = var.root
      LAKEHOUSE_LAKE    = self.input.lake
      LAKEHOUSE_CATALOG = self.input.path
    }
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f -- '${self.input.path}' '${self.input.path}.wal'"
  }
}
