"""Each system-preset value taken from public code equals the expression its source gives (evaluated here
from the source's own constants, tests/data/public_constants.yaml), and says where it comes from."""

from pathlib import Path

import pytest
import yaml

from pimphony.model.config import SystemConfig

DATA = yaml.safe_load((Path(__file__).parent / "data" / "public_constants.yaml").read_text())


@pytest.mark.parametrize("entry", DATA["constants"], ids=lambda e: f"{e['system']}.{e['key']}")
def test_public_constant(entry):
    system = SystemConfig.load(entry["system"])
    expected = eval(entry["expression"], {"__builtins__": {}}, dict(entry["inputs"]))
    assert getattr(system, entry["key"]) == pytest.approx(expected, rel=5e-4)
    prov = system.provenance[entry["key"]]
    source = DATA["sources"][entry["system"]]
    assert prov.basis == "public-model"
    assert source["repository"] in prov.source and source["commit"][:7] in prov.source


def test_every_public_system_value_is_checked():
    checked = {(e["system"], e["key"]) for e in DATA["constants"]}
    for name in DATA["sources"]:
        system = SystemConfig.load(name)
        public = {(name, k) for k, _, basis, src in system.describe()
                  if basis == "public-model" and DATA["sources"][name]["commit"][:7] in src}
        assert public == {c for c in checked if c[0] == name}
