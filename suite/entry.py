"""The one wrapper every command line of the suite runs through: main.py (the papers of its argparse parser and the
Nest & Ernoult 2024 Hydra lines) and Wu et al. 2024's scripts (papers.wu2024.main). However a run ends, the user
reads one line on stderr (no traceback, except for a fault of the code itself) and gets an exit code:

    done                                  0    (the command's own output)
    bad input (cli.UsageError)            2    '<prog>: error: <flag> <value>: <fix>', before anything is written:
                                               every paper checks its flags first, and cli.apply_suite_flags (the
                                               one place where --threads and --results-dir are applied and checked,
                                               for every entry) runs before any folder is made
    non-finite values (trainer.Stopped)   1    '<prog>: non-finite values in epoch k …: the last good checkpoint …'
    Ctrl-C                                130  '<prog>: interrupted in epoch k; <folder> holds the checkpoint of …'
    a write refused (OSError: disk full)  1    '<prog>: error: writing to <folder> failed (…); …': every file there
                                               is whole (rundir writes to a temporary file, then renames it), so a
                                               training run resumes from its last complete checkpoint
    another torchrun rank stopped         1    '<prog>: error: torchrun rank r: another rank stopped …'

Under torchrun a rank that stops leaves the process group at once (distributed.leave), so that a peer waiting for it
in a collective fails there immediately and ends with its own one line, instead of hanging until the timeout.

The run's records (runlog): the output is teed into the folder's run.log, and the run has a row in runs.csv under
its results folder, with the status this wrapper gives it.
"""
import sys
import traceback

from suite import distributed
from suite import runlog
from suite.cli import UsageError
from suite.trainer import Stopped


def run(prog, argv, command, paper=None):
    """command(argv) (a paper's or a script's dispatch, returning its result folder) under the suite's handling of
    faults and records; `prog` prefixes every line (main.py, S4.1-mnist-FCN.py, …), `paper` is runs.csv's paper when
    known before parsing (else the command calls runlog.note(paper=…))."""
    distributed.setup()                             # torchrun: join the process group (nothing for one process)
    runlog.begin(prog, argv, paper)
    status, crash = 'failed', ''
    try:
        result = command(argv)
        status = 'done'
        return result
    except UsageError as e:
        _end(prog, f'error: {e}', 2)
    except Stopped as e:
        status = e.status
        _end(prog, str(e), e.code)
    except KeyboardInterrupt:
        status = 'interrupted'
        _end(prog, interrupted(runlog.folder()), 130)
    except OSError as e:
        _end(prog, f'error: {write_failed(e, runlog.folder(), prog)}', 1)
    except SystemExit as e:                         # (--help, --version)
        status = 'done' if e.code in (0, None) else 'failed'
        raise
    except Exception as e:
        if distributed.peer_lost(e):
            _end(prog, f'error: torchrun rank {distributed.rank()}: another rank stopped (its own line says why), '
                       f'so this one stops too', 1)
        crash = traceback.format_exc()              # a fault of the code: Python prints it; run.log keeps it too
        distributed.leave()
        raise
    finally:
        runlog.finish(status, crash)


def _end(prog, line, code):
    """Leave the torchrun group (peers stop waiting), print the one line, exit with `code` (no chained traceback)."""
    distributed.leave()
    print(f'{prog}: {line}', file=sys.stderr)
    raise SystemExit(code) from None


def interrupted(folder):
    """The line of a Ctrl-C outside the epoch loop (inside it trainer.Stopped says which checkpoint resumes)."""
    return 'interrupted' + (f'; the files of {folder} are whole (each is written to a temporary file, then renamed)'
                            if folder else '')


def write_failed(error, folder, prog='main.py'):
    """The line of an OSError: naming the run folder when there is one, and what in it is safe to resume from."""
    reason = error.strerror or str(error)
    if folder is None:
        return f'{reason}' + (f': {error.filename}' if error.filename else '')
    return (f'writing to {folder} failed ({reason}); every file there is whole (each is written to a temporary file, '
            f'then renamed): once the cause is fixed, a training run resumes from its last complete checkpoint with '
            f'python {prog} --load-path {folder}')
