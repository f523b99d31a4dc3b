"""Dataset files in the standard layouts (small fixtures), tensor batching and augmentation on tensors."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite import data
from conftest import run_main


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
    import gzip
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


def test_cifar_python_layout_and_normalisation(cifar_root):
    """Pixels in [0, 1] from the pickles; each paper normalises with its own constants."""
    x, y = data.load('cifar10', cifar_root, True)
    assert x.shape == (60, 3, 32, 32) and y.shape == (60,) and y.dtype == torch.int64
    raw = pickle.load(open(os.path.join(cifar_root, 'cifar-10-batches-py', 'data_batch_1'), 'rb'))
    v = raw['data'][0].reshape(3, 32, 32)[2, 5, 7] / 255
    assert abs(x[0, 2, 5, 7].item() - v) < 1e-6
    xn = data.normalize(x, data.CIFAR_MEAN, (0.6, 0.6, 3 * 0.2010))
    assert abs(xn[0, 2, 5, 7].item() - (v - 0.4465) / (3 * 0.2010)) < 1e-6
    xt, _ = data.load('cifar10', cifar_root, False)
    assert xt.shape == (20, 3, 32, 32)


def test_mnist_idx_files_are_read_without_torchvision(mnist_root):
    x, y = data.load('mnist', mnist_root, True)
    x5, y5 = data.load_mnist5k(True)
    assert x.shape == (50, 1, 28, 28)
    assert torch.equal(y, y5[:50]) and (x - x5[:50]).abs().max() < 1 / 255


def test_augment_is_a_flip_and_an_edge_padded_crop():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32)
    out = data.augment(x, g)
    for b in range(6):
        found = False
        for img in (x[b], x[b].flip(-1)):
            p = F.pad(img[None], (4, 4, 4, 4), mode='replicate')[0]
            found |= any(torch.equal(out[b], p[:, i:i + 32, j:j + 32]) for i in range(9) for j in range(9))
        assert found, b


def test_batches_cover_the_data_once_per_epoch():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    b = data.Batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([yy for _, yy in b])
    assert len(b) == 3 and sorted(seen.tolist()) == list(range(10))


def test_cnn_trains_on_cifar_files(cifar_root, tmp_path):
    argv = ['--model', 'CNN', '--task', 'CIFAR10', '--data-aug', '--channels', '8', '--kernels', '3', '--pools', 'm',
            '--strides', '1', '--paddings', '1', '--fc', '10', '--lrs', '0.01', '0.01', '--act', 'my_hard_sig',
            '--T1', '8', '--T2', '3', '--mbs', '10', '--betas', '0.0', '0.5', '--thirdphase', '--loss', 'cel',
            '--softmax', '--epochs', '1', '--data-root', cifar_root, '--results-dir', str(tmp_path / 'r'),
            '--seed', '0']
    code, folder = run_main(argv)
    assert code == 0
    assert os.path.exists(os.path.join(folder, 'metrics.csv'))


def test_absent_cifar_is_a_clear_error(tmp_path, capsys):
    code, _ = run_main(['--model', 'CNN', '--task', 'CIFAR10', '--lrs', '1', '1', '1', '--data-root',
                        str(tmp_path / 'none'), '--results-dir', str(tmp_path / 'r')])
    err = capsys.readouterr().err
    assert code == 2 and 'CIFAR-10 not found' in err and len(err.strip().splitlines()) == 1
