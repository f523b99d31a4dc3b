"""Every command of check/*.sh runs, in --dry-run mode (one mini-batch, relaxation capped to a few steps)."""
import glob
import os
import shlex

import pytest

from conftest import ROOT, run_main


# tests/test_nest2024.py dry-runs all 33 commands of check/nest2024.sh with thinned models; here the first few run at
# full model size (all 33 at full size would add minutes to the suite)
FULL_SIZE = {'nest2024.sh': 3}


def commands():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'check', '*.sh'))):
        name = os.path.basename(path)
        lines = [(n, ln.strip()) for n, ln in enumerate(open(path), 1) if ln.strip().startswith('python main.py')]
        for n, line in lines[:FULL_SIZE.get(name)]:
            out.append(pytest.param(shlex.split(line)[2:], id=f'{name}:{n}'))
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
