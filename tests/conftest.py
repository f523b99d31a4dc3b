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


def redraw(folder):
    """Delete the PNGs of a result folder, run its copy of plotFunctions.py there headless; returns
    (PNG names before, PNG names after)."""
    import subprocess
    pngs = [f for f in os.listdir(folder) if f.endswith('.png')]
    for f in pngs:
        os.remove(os.path.join(folder, f))
    r = subprocess.run([sys.executable, 'plotFunctions.py'], cwd=folder, capture_output=True, text=True,
                       env={**os.environ, 'DISPLAY': '', 'MPLBACKEND': ''})
    assert r.returncode == 0, r.stderr
    return sorted(pngs), sorted(f for f in os.listdir(folder) if f.endswith('.png'))


def run_main(argv):
    """main.main in-process; returns (exit code, result folder or None)."""
    import main
    try:
        return 0, main.main(argv)
    except SystemExit as e:
        return e.code, None
