import shutil
from pathlib import Path

import pytest

from lakehouse.config import ConfigError, load_domain

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("domain", sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir()))
def test_every_domain_config_loads(domain):
    cfg = load_domain(CONFIG_DIR / domain)
    assert cfg.contracts and cfg.gold and cfg.sources


def test_a_bad_value_names_file_and_line(tmp_path):
    shutil.copytree(CONFIG_DIR / "retail", tmp_path / "retail")
    path = tmp_path / "retail" / "contracts" / "order_lines.yaml"
    text = path.read_text().replace("type: int64", "type: integer")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "type: integer" in t)
    with pytest.raises(ConfigError, match=rf"order_lines.yaml:{line}: .*columns\.4\.type"):
        load_domain(tmp_path / "retail")


def test_unknown_keys_are_refused(tmp_path):
    shutil.copytree(CONFIG_DIR / "retail", tmp_path / "retail")
    path = tmp_path / "retail" / "domain.yaml"
    path.write_text(path.read_text() + "shedule: daily\n")
    with pytest.raises(ConfigError, match=r"domain.yaml:\d+: shedule: Extra inputs"):
        load_domain(tmp_path / "retail")


def test_a_check_name_must_name_a_check_the_column_has():
    from lakehouse.config import ColumnContract

    with pytest.raises(ValueError, match=r"checks \['pattern'\] name checks this column does not have "
                                         r"\(it has \['ge', 'parse'\]\)"):
        ColumnContract(name="q", type="int64", ge=1, checks={"pattern": {"name": "p"}})
    with pytest.raises(ValueError, match="max_reject_rate"):
        ColumnContract(name="q", type="int64", ge=1, checks={"ge": {"max_reject_rate": 2}})
    assert ColumnContract(name="q", type="int64", ge=1, checks={"ge": {"name": "positive"}}).checks["ge"].name == "positive"


def test_a_value_cut_by_an_unquoted_comma_gets_a_hint(tmp_path):
    """YAML's one-line ``{...}`` ends a value at ``, ``: ``expr: coalesce(a, b) > 0`` becomes
    ``expr: 'coalesce(a'`` and a key ``b) > 0`` with no value. The error says why."""
    shutil.copytree(CONFIG_DIR / "retail", tmp_path / "retail")
    path = tmp_path / "retail" / "contracts" / "orders.yaml"
    text = path.read_text()
    assert 'expr: "updated_at >= ordered_at"' in text
    path.write_text(text.replace('expr: "updated_at >= ordered_at"', "expr: coalesce(updated_at, ordered_at) >= ordered_at"))
    with pytest.raises(ConfigError, match=r"orders.yaml:15: .*ordered_at\) >= ordered_at.*got None\); in a one-line "
                                          r"\{\.\.\.\} or \[\.\.\.\] an unquoted ', ' ends the value"):
        load_domain(tmp_path / "retail")
    # a block mapping has no such trap, and gets no such hint
    path.write_text(text + "shedule: daily\n")
    with pytest.raises(ConfigError) as err:
        load_domain(tmp_path / "retail")
    assert "unquoted" not in str(err.value)


def test_an_impossible_date_names_file_line_and_value(tmp_path):
    shutil.copytree(CONFIG_DIR / "retail", tmp_path / "retail")
    path = tmp_path / "retail" / "domain.yaml"
    lines = path.read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if t.startswith("start_date:"))
    lines[line - 1] = "start_date: 2026-10-32"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"domain.yaml:{line}: the value '2026-10-32' is not valid YAML "
                                          r"\(day is out of range for month\)"):
        load_domain(tmp_path / "retail")


def test_the_cli_prints_one_line_for_an_error_and_the_traceback_with_debug(tmp_path, capsys):
    from lakehouse import cli

    shutil.copytree(CONFIG_DIR / "retail", tmp_path / "retail")
    path = tmp_path / "retail" / "domain.yaml"
    path.write_text(path.read_text().replace("timezone: UTC", "timezone: Mars/Olympus"))
    with pytest.raises(SystemExit) as exited:
        cli.main(["--config-dir", str(tmp_path / "retail"), "status"])
    message = str(exited.value.code)
    assert message.startswith("lakehouse: invalid configuration:") and "domain.yaml:" in message
    assert "Traceback" not in message and "Mars/Olympus" in message
    # an unexpected error is one line too, with its type; --debug raises it whole
    with pytest.raises(SystemExit) as exited:
        cli.main(["--config-dir", str(tmp_path / "missing"), "status"])
    assert "\n" not in str(exited.value.code)
    with pytest.raises(SystemExit, match="no domain.yaml"):
        cli.main(["--debug", "--config-dir", str(tmp_path / "missing"), "status"])
    assert cli.error_line(RuntimeError("boom\nsecond line")) == (
        "lakehouse: RuntimeError: boom (--debug shows the traceback)")
