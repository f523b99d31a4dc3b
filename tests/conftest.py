import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _threads():
    # one torch thread per pytest-xdist worker (`-n 2` runs two of them on the two cores), two in a serial run
    torch.set_num_threads(1 if os.environ.get('PYTEST_XDIST_WORKER') else 2)
    yield


@pytest.fixture(scope='session')
def mnist5k():
    from suite import data
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


def assert_resume_equals_uninterrupted(base, tmp_path, epochs=lambda n: ['--epochs', str(n)], resume=None,
                                       metric='test_acc'):
    """`base` trained 2 epochs in one run equals 1 epoch then a resumed epoch (--load-path): same folder reused,
    bit-identical weights, same test accuracies. `epochs(n)` spells the epoch count, `resume(folder)` the resuming
    command (default: `base`, one epoch, --load-path). Returns the resumed folder."""
    _, full = run_main(base + epochs(2) + ['--results-dir', str(tmp_path / 'a')])
    _, part = run_main(base + epochs(1) + ['--results-dir', str(tmp_path / 'b')])
    resume = resume or (lambda folder: base + epochs(2) + ['--load-path', folder, '--results-dir', str(tmp_path / 'b')])
    _, resumed = run_main(resume(part))
    assert resumed == part
    a = torch.load(os.path.join(full, 'checkpoint.tar'), weights_only=False)
    b = torch.load(os.path.join(part, 'checkpoint.tar'), weights_only=False)
    assert a['epoch'] == b['epoch'] == 2
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    assert [r[metric] for r in a['history']] == [r[metric] for r in b['history']]
    return part
