"""Bad input ends with one clear line naming the flag or folder, exit code 2, no traceback, nothing written."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_main

P1H = ['--action', 'train', '--discrete', '--size_tab', '10', '512', '784', '--lr_tab', '0.04', '0.08',
       '--epochs', '1', '--T', '40', '--Kmax', '15', '--beta', '0.1']

BAD = {
    'lr_tab length': (['--action', 'train', '--size_tab', '10', '512', '784', '--lr_tab', '0.1'], '--lr_tab'),
    'unknown activation': (P1H + ['--activation-function', 'relu'], '--activation-function'),
    'T < Kmax': (['--action', 'plotcurves', '--size_tab', '10', '64', '784', '--T', '5', '--Kmax', '10'], '--T'),
    'absent dataset': (P1H + ['--data-root', '/nonexistent/mnist'], '/nonexistent/mnist'),
    'bad size_tab': (['--action', 'train', '--size_tab', '10', '512', '100', '--lr_tab', '1', '1'], '--size_tab'),
    'unknown flag': (P1H + ['--nonsense', '3'], '--nonsense'),
    'unknown dataset': (P1H + ['--dataset', 'imagenet'], '--dataset'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input(case, tmp_path, capsys):
    argv, flag = BAD[case]
    code, _ = run_main(argv + ['--results-dir', str(tmp_path / 'results')])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith('main.py: error:') and flag in err, err
    assert not os.path.exists(tmp_path / 'results') or not any(os.scandir(tmp_path / 'results'))


def test_bad_input_from_the_shell(tmp_path):
    r = subprocess.run([sys.executable, 'main.py', '--action', 'train', '--size_tab', '10', '512', '784',
                        '--lr_tab', '0.1', '--results-dir', str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr and '--lr_tab' in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_training_method_aliases_and_todo_alias():
    import main
    p = main.build_parser()
    for name in ('EP', 'eqprop', 'BPTT'):
        assert p.parse_args(['--training-method', name]).training_method == name
    assert p.parse_args(['--todo', 'receipe']).action == 'receipe'


def test_help_is_readable():
    import main
    text = main.build_parser().format_help()
    assert '--size_tab' in text and '--lr_tab' in text and '--dry-run' in text
