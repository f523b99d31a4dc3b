"""Every command of check/*.sh runs, in --dry-run mode (one mini-batch, relaxation capped to a few steps)."""
import glob
import os
import shlex

import pytest

from conftest import ROOT, run_main


def commands():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'check', '*.sh'))):
        for n, line in enumerate(open(path), 1):
            line = line.strip()
            if line.startswith('python main.py'):
                out.append(pytest.param(shlex.split(line)[2:], id=f'{os.path.basename(path)}:{n}'))
    return out


def test_check_scripts_are_not_empty():
    assert len(commands()) >= 21


@pytest.mark.parametrize('argv', commands())
def test_check_command_dry_runs(argv, tmp_path):
    code, folder = run_main(argv + ['--dry-run', '--results-dir', str(tmp_path), '--seed', '0'])
    assert code == 0
    if folder is None:                 # evaluate of an absent run (dry run): prints accuracies, writes nothing
        assert 'evaluate' in argv
        return
    assert os.listdir(tmp_path) == ['dry-run'] and os.path.relpath(folder, tmp_path).split(os.sep)[0] == 'dry-run'
    files = os.listdir(folder)
    assert 'hyperparameters.txt' in [f.lower() for f in files]
    # binary EP keeps the original layout: the plotting script and its figures sit in the date folder
    here = files + (os.listdir(os.path.dirname(folder)) if os.path.basename(folder).startswith('S-') else [])
    assert 'plotFunctions.py' in here
    assert any(f.endswith('.png') for f in here), here
