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
