"""Result folders and crash-safe writes, shared by every paper of the suite.

A run folder is date-stamped and numbered (Trial-1, Trial-2, … with no upper limit) and is never reused: it is
claimed with an atomic mkdir. Every file is written to a temporary name in the same folder and renamed, so an
interrupted run never leaves a half-written CSV or checkpoint. Under torchrun, rank 0 alone writes: every write
here is a no-op on the other ranks (they compute the same run; trainer.open_run gives them rank 0's folder name).
"""
import contextlib
import datetime
import errno
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
import time

import torch

from suite import distributed

# the suite's root folder (plotFunctions.py, the copied plotting script, lives there)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def claim_run_dir(parent, prefix='Trial-'):
    """Create parent/<prefix><k> with k = 1 + the largest existing number (atomic: concurrent runs cannot collide)."""
    os.makedirs(parent, exist_ok=True)
    pat = re.compile(re.escape(prefix) + r'(\d+)$')
    k = 1 + max([int(m.group(1)) for m in map(pat.match, os.listdir(parent)) if m] or [0])
    while True:
        path = os.path.join(parent, f'{prefix}{k}')
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            k += 1


def claim_dir(path):
    """Create `path`, or path_2, path_3, … if it exists (atomic mkdir: never reuses a folder)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    k = 1
    while True:
        candidate = path if k == 1 else f'{path}_{k}'
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            k += 1


def claim_time_dir(parent):
    """parent/<YYYY-MM-DD>/<HH-MM-SS> (the folders of Laborieux et al. 2021 and EPLCANet), never reused (claim_dir)."""
    now = time.localtime()
    return claim_dir(os.path.join(parent, time.strftime('%Y-%m-%d', now), time.strftime('%H-%M-%S', now)))


def today():
    return datetime.date.today().isoformat()


def command_line(argv=None, prog='main.py'):
    """The command as typed: 'python <prog> <argv, shell-quoted>' (prog: main.py, or a Wu 2024 entry script)."""
    argv = sys.argv[1:] if argv is None else argv
    return f'python {prog} ' + ' '.join(shlex.quote(a) for a in argv)


def current_umask():
    """The process umask, read without changing it where /proc says it (os.umask both sets and gets)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_open_mode(path):
    """The permissions open(path, 'w') would leave: an existing file keeps its own, a new one gets 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic(path, write):
    """write(tmp) to a temporary file beside `path`, then rename it to `path`: a failed or interrupted write leaves
    the previous `path` whole (and no temporary file). A write that fails for lack of space or any other fault of the
    file system is an OSError, also where torch.save reports it as a RuntimeError of its zip writer."""
    if not distributed.is_main():
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _plain_open_mode(path))     # mkstemp makes 0600 files; the user's umask decides, as open()
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, RuntimeError) and TORCH_WRITE_FAILED.search(str(e)):
            raise OSError(errno.EIO, f'torch.save could not write {os.path.basename(path)} ({_refusal(folder)})',
                          path) from e
        raise


# how torch.save's zip writer reports a write that the file system refused (e.g. a full disk)
TORCH_WRITE_FAILED = re.compile(r'inline_container|PytorchStreamWriter|file write failed')


def _refusal(folder):
    try:
        st = os.statvfs(folder)
        return 'no space left on the device' if st.f_bavail == 0 else 'the file system refused the write'
    except (OSError, AttributeError):
        return 'the file system refused the write'


@contextlib.contextmanager
def locked(folder):
    """An exclusive lock on a folder (flock of the folder itself, no lock file) while the block runs: concurrent runs
    that read, change and write back a file there (runs.csv) do so one after the other. No lock where the platform
    has no flock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                                # (closing releases the lock)


def write_text(path, text):
    def w(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic(path, w)


def write_csv(path, frame):
    """pandas DataFrame → CSV, atomically (the whole table is rewritten each epoch)."""
    atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def save(obj, path):
    """torch.save, atomically (checkpoints are state dicts, never pickled modules)."""
    atomic(path, lambda tmp: torch.save(obj, tmp))


def save_npy(path, array):
    """numpy array → .npy, atomically."""
    import numpy as np

    def w(tmp):
        with open(tmp, 'wb') as f:
            np.save(f, array)
    atomic(path, w)


def write_hyperparameters(folder, argv, items, header=None, name='hyperparameters.txt', prog='main.py'):
    """hyperparameters.txt: the full command line first, then '- key: value' lines."""
    lines = [command_line(argv, prog)]
    if header:
        lines.append(header)
    lines += [f'- {k}: {v}' for k, v in items]
    if not any(k == 'threads' for k, _ in items):
        lines.append(f'- threads: {torch.get_num_threads()}')       # --threads, or what torch chose
    if distributed.world_size() > 1:
        lines.append(f'- world size: {distributed.world_size()} (torchrun ranks, each relaxing its shard of every '
                     f'mini-batch)')
    write_text(os.path.join(folder, name), '\n'.join(lines) + '\n')


def append_hyperparameters(folder, lines, name='hyperparameters.txt'):
    """Lines added at the end of a hyperparameter file, rewritten atomically (a full disk cannot cut it in half)."""
    if not distributed.is_main():
        return
    path = os.path.join(folder, name)
    old = b''
    if os.path.isfile(path):
        with open(path, 'rb') as f:               # (bytes: whatever the file holds is kept as it is)
            old = f.read()
    new = ''.join(line + '\n' for line in lines).encode()

    def w(tmp):
        with open(tmp, 'wb') as f:
            f.write(old + new)
    atomic(path, w)


def copy_plot_script(folder, name='plotFunctions.py'):
    if not distributed.is_main():
        return
    shutil.copy(os.path.join(ROOT, name), os.path.join(folder, name))


def plot_folder(folder, **kw):
    """Draw the figures of a run folder (plotFunctions.plot_folder). plotFunctions is imported here, on first use:
    matplotlib and pandas cost about a second of start-up that a command drawing nothing (--help, a usage error, the
    first printed line of a run) should not pay."""
    import plotFunctions
    return plotFunctions.plot_folder(folder, **kw)
