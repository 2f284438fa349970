"""Where the command-line tools the flows call are found."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_command(name: str) -> str | None:
    """``name`` beside the running interpreter (a virtualenv's wheels, whether or not it is activated),
    else on ``PATH``; None when neither has it."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)
