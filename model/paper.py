"""The paper's figures (``paper.yaml`` beside this module, their one home), read once.

:data:`PAPER` is the file as nested dictionaries; the reproductions, reports and tests compare with it.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import yaml

PAPER = MappingProxyType(yaml.safe_load((Path(__file__).with_name("paper.yaml")).read_text()))
