import gzip
import os
import pickle
import sys

import numpy as np
import pytest

if os.environ.get('PYTEST_XDIST_WORKER'):
    # one thread per worker, also for the runs' default (suite.cli.default_threads honours it) and subprocesses: the
    # default would otherwise follow what the other worker happens to run, and a run and its resume could differ
    os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch                                            # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _threads():
    # one torch thread per pytest-xdist worker (`-n 2` runs two of them on the two cores), two in a serial run
    torch.set_num_threads(1 if os.environ.get('PYTEST_XDIST_WORKER') else 2)
    yield


@pytest.fixture
def one_thread():
    """One torch thread, also in a serial run (a module of small arrays: `pytestmark = pytest.mark.usefixtures(
    'one_thread')`): a second thread only waits for the first on products this small, far longer on a loaded
    machine."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope='session')
def mnist5k():
    from suite import data
    return data.load_mnist5k(True), data.load_mnist5k(False)


@pytest.fixture
def cifar_root(tmp_path):
    """A tiny CIFAR-10 in the python layout: cifar-10-batches-py/data_batch_1..5 and test_batch."""
    root = tmp_path / 'cifar'
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name, n in [(f'data_batch_{i}', 12) for i in range(1, 6)] + [('test_batch', 20)]:
        labels = rng.randint(0, 10, n)
        imgs = rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        imgs[:, 0] = (labels * 25)[:, None, None]           # a learnable cue in the red channel
        with open(folder / name, 'wb') as f:
            pickle.dump({'data': imgs.reshape(n, -1), 'labels': labels.tolist()}, f)
    return str(root)


@pytest.fixture
def mnist_root(tmp_path):
    """The four MNIST idx files (gzipped) written from the embedded digits."""
    from suite import data
    root = tmp_path / 'mnist'
    (root / 'MNIST' / 'raw').mkdir(parents=True)
    for train in (True, False):
        x, y = data.load_mnist5k(train)
        imgs = (x[:50, 0] * 255).round().to(torch.uint8).numpy()
        names = data.MNIST_FILES[train]
        with gzip.open(root / 'MNIST' / 'raw' / (names[0] + '.gz'), 'wb') as f:
            f.write(bytes([0, 0, 8, 3]) + b''.join(int(d).to_bytes(4, 'big') for d in imgs.shape) + imgs.tobytes())
        with gzip.open(root / 'MNIST' / 'raw' / (names[1] + '.gz'), 'wb') as f:
            f.write(bytes([0, 0, 8, 1]) + (50).to_bytes(4, 'big') + y[:50].numpy().astype(np.uint8).tobytes())
    return str(root)


def cut(path, keep=0.5):
    """Truncate a file to `keep` of its bytes (an interrupted download or copy); returns its path."""
    path = str(path)
    raw = open(path, 'rb').read()
    open(path, 'wb').write(raw[:int(len(raw) * keep)])
    return path


def idx_bytes(dims, body):
    """An idx file of unsigned bytes: its header announces `dims`, whatever `body` holds."""
    return bytes([0, 0, 8, len(dims)]) + b''.join(int(d).to_bytes(4, 'big') for d in dims) + body


def short_mnist(root, train=True, body=1000):
    """Replace mnist_root's gzipped images of a split by an idx file announcing 50 x 28 x 28 bytes but holding `body`;
    returns its path."""
    from suite import data
    path = os.path.join(root, 'MNIST', 'raw', data.MNIST_FILES[train][0] + '.gz')
    with gzip.open(path, 'wb') as f:
        f.write(idx_bytes((50, 28, 28), bytes(body)))
    return path


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
