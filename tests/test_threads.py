"""The golden model's threads (model/threads.py): work split over the cores, and a fork that keeps working."""

import subprocess
import sys

import numpy as np
import pytest

from pimphony.model import threads


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 64])
def test_split_rows_fills_every_row_once_with_its_index(rows):
    out = np.zeros(rows, dtype=np.int64)
    seen = []

    def fill(part, first):
        part += np.arange(first, first + len(part)) + 1
        seen.append((first, len(part)))

    threads.split_rows(fill, out, row0=10)
    assert out.tolist() == list(range(11, 11 + rows))
    assert sum(n for _, n in seen) == rows and len(seen) <= max(1, threads.cores())


@pytest.mark.parametrize("channels", [1, 2, 3, 16])
def test_lanes_deal_every_channel_to_one_thread(channels):
    lanes = threads.lanes(channels)
    assert sum(lanes) == (1 << channels) - 1 and all(a & b == 0 for i, a in enumerate(lanes) for b in lanes[i + 1:])
    assert len(lanes) == min(channels, threads.cores())


FORK = """
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import numpy as np
from pimphony.model import threads

def work(_):
    out = np.zeros(8)
    threads.split_rows(lambda part, first: part.fill(first + 1), out)
    return out.tolist()

if __name__ == "__main__":
    parent = work(0)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
        assert list(pool.map(work, range(2))) == [parent, parent]
"""


def test_a_forked_process_gets_threads_of_its_own():
    """A process forked after the pool started (ProcessPoolExecutor's default on Linux, as the sweeps and
    the validation use) copies the pool but not its threads: without a pool of its own it hangs."""
    proc = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
