import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope='session')
def mnist5k():
    import data
    return data.load_mnist5k(True), data.load_mnist5k(False)


def run_main(argv):
    """main.main in-process; returns (exit code, result folder or None)."""
    import main
    try:
        return 0, main.main(argv)
    except SystemExit as e:
        return e.code, None
