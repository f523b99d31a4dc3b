"""Bad input, as a new user would type it, for the four papers' command lines: every case ends with exit code 2 and
one line 'main.py: error: ...' naming the flag, no traceback, and no folder under --results-dir. Every case fails
while the flags are checked (before any data is loaded), so the file runs in seconds."""
import io
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, cut, run_main, short_mnist

ERNOULT = ['--action', 'train', '--discrete', '--size_tab', '10', '64', '784', '--lr_tab', '0.04', '0.08',
           '--epochs', '1', '--T', '8', '--Kmax', '4', '--beta', '0.1', '--dataset', 'mnist5k']
ERNOULT_CONV = ['--action', 'train', '--C_tab', '8', '4', '1', '--size_tab', '10', '--lr_tab', '0.1', '0.1', '0.1',
                '--epochs', '1', '--T', '8', '--Kmax', '4', '--beta', '0.1', '--dataset', 'mnist5k']
LAB = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '64', '10', '--lrs', '0.1', '0.1',
       '--betas', '0.0', '0.1', '--T1', '8', '--T2', '4', '--mbs', '20', '--epochs', '1']
LAB_CNN = ['--model', 'CNN', '--task', 'mnist5k', '--channels', '8', '8', '--kernels', '5', '5', '--strides', '1', '1',
           '--paddings', '0', '0', '--pools', 'mm', '--fc', '10', '--lrs', '0.1', '0.1', '0.1', '--T1', '8', '--T2', '4']
LCA = ['--model', 'LCACNN', '--task', 'mnist5k', '--lca_feats', '8', '--channels', '8', '16', '--kernels', '3', '3',
       '--paddings', '1', '1', '--strides', '1', '1', '--pools', 'im', '--fc', '10', '--lrs', '0.1', '0.1', '0.1',
       '--dict_training', 'learn', '--T1', '8', '--T2', '4', '--lca_iters', '5', '--epochs', '1']
DICTLEARN = ['--todo', 'dictlearn', '--task', 'mnist5k', '--lca_feats', '8', '--lca_ksize', '5', '--mbs', '20',
             '--epochs', '1']
BIN = ['--archi', 'fc', '--layersList', '784', '64', '10', '--T', '8', '--Kmax', '4', '--beta', '0.3', '--gamma', '1e-5',
       '1e-4', '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05', '--dataset', 'mnist5k', '--epochs', '1',
       '--learnAlpha', '0']
BIN_CONV = ['--archi', 'conv', '--layersList', '10', '--convList', '8', '8', '1', '--kernelSize', '5', '--Fpool', '2',
            '--T', '8', '--Kmax', '4', '--beta', '0.3', '--lrBias', '0.025', '0.05', '0.1', '--dataset', 'mnist5k',
            '--epochs', '1', '--learnAlpha', '0']


def _set(base, *tokens):
    """`base` with the flags of `tokens` (each followed by its values) replacing their values there, or appended."""
    argv = list(base)
    groups = []
    for t in tokens:
        if t.startswith('--'):
            groups.append([t])
        else:
            groups[-1].append(t)
    for flag, *values in groups:
        if flag in argv:
            i = j = argv.index(flag) + 1
            while j < len(argv) and not argv[j].startswith('--'):
                j += 1
            argv = argv[:i] + values + argv[j:]
        else:
            argv += [flag] + values
    return argv


# case id: (argv, the flag the message must name)
CASES = {
    # ---- Ernoult et al. 2019
    'ernoult beta 0': (_set(ERNOULT, '--beta', '0'), '--beta'),
    'ernoult beta nan': (_set(ERNOULT, '--beta', 'nan'), '--beta'),
    'ernoult lr nan': (_set(ERNOULT, '--lr_tab', 'nan', '0.08'), '--lr_tab'),
    'ernoult lr inf': (_set(ERNOULT, '--lr_tab', '0.04', 'inf'), '--lr_tab'),
    'ernoult lr beyond float32': (_set(ERNOULT, '--lr_tab', '1e308', '0.08'), '--lr_tab'),
    'ernoult lr negative': (_set(ERNOULT, '--lr_tab', '-0.04', '0.08'), '--lr_tab'),
    'ernoult layer size 0': (_set(ERNOULT, '--size_tab', '10', '0', '784'), '--size_tab'),
    'ernoult 5 outputs': (_set(ERNOULT, '--size_tab', '5', '64', '784'), '--size_tab'),
    'ernoult epochs 0': (_set(ERNOULT, '--epochs', '0'), '--epochs'),
    'ernoult batch 0': (_set(ERNOULT, '--batch-size', '0'), '--batch-size'),
    'ernoult dt 0': (_set(ERNOULT, '--dt', '0'), '--dt'),
    'ernoult conv maps vanish': (_set(ERNOULT_CONV, '--C_tab', '8', '8', '8', '1', '--lr_tab', '0.1', '0.1', '0.1',
                                      '0.1'), '--C_tab'),
    'ernoult conv channels 0': (_set(ERNOULT_CONV, '--C_tab', '8', '0', '1'), '--C_tab'),
    'ernoult padding 2': (_set(ERNOULT_CONV, '--padding', '2'), '--padding'),
    'ernoult Fconv without C_tab': (_set(ERNOULT, '--Fconv', '3'), '--Fconv'),
    'ernoult toymodel with C_tab': (_set(ERNOULT_CONV, '--toymodel'), '--toymodel'),
    'ernoult uses --optim': (_set(ERNOULT, '--optim', 'sgd'), '--optim'),
    'ernoult uses --archi': (_set(ERNOULT, '--archi', '784', '64', '10'), '--archi'),
    'ernoult seed negative': (_set(ERNOULT, '--seed', '-1'), '--seed'),
    'ernoult + laborieux flag': (_set(ERNOULT, '--lrs', '0.1', '0.1'), '--lrs'),
    'ernoult + binary flag': (_set(ERNOULT, '--batchSize', '64'), '--batchSize'),
    'ernoult tol 0': (_set(ERNOULT, '--tol', '0'), '--tol'),
    'ernoult tol nan': (_set(ERNOULT, '--tol', 'nan'), '--tol'),
    'ernoult async energy-based': ([a for a in ERNOULT if a != '--discrete'] + ['--schedule', 'async'], '--schedule'),
    'ernoult tol plotcurves': (_set(ERNOULT, '--action', 'plotcurves', '--tol', '1e-3'), '--tol'),
    'ernoult analog without tau': (_set(ERNOULT, '--analog', 'Analog SGD'), '--analog-tau'),
    'ernoult analog tau 0': (_set(ERNOULT, '--analog', 'TT-v1', '--analog-tau', '0'), '--analog-tau'),
    'ernoult analog unknown setting': (_set(ERNOULT, '--analog', 'SGD', '--analog-tau', '0.6'), '--analog'),
    # ---- Laborieux et al. 2021
    'laborieux beta2 0': (_set(LAB, '--betas', '0.0', '0.0'), '--betas'),
    'laborieux beta2 nan': (_set(LAB, '--betas', '0.0', 'nan'), '--betas'),
    'laborieux lr nan': (_set(LAB, '--lrs', 'nan', '0.1'), '--lrs'),
    'laborieux wd inf': (_set(LAB, '--wds', 'inf', '0'), '--wds'),
    'laborieux momentum -1': (_set(LAB, '--mmt', '-1'), '--mmt'),
    'laborieux momentum 1': (_set(LAB, '--mmt', '1'), '--mmt'),
    'laborieux mbs 0': (_set(LAB, '--mbs', '0'), '--mbs'),
    'laborieux mbs negative': (_set(LAB, '--mbs', '-3'), '--mbs'),
    'laborieux epochs 0': (_set(LAB, '--epochs', '0'), '--epochs'),
    'laborieux layer 0': (_set(LAB, '--archi', '784', '0', '10'), '--archi'),
    'laborieux input size': (_set(LAB, '--archi', '100', '64', '10'), '--archi'),
    'laborieux scale 0': (_set(LAB, '--scale', '0'), '--scale'),
    'laborieux conv maps vanish': (_set(LAB_CNN, '--channels', '8', '8', '8', '--kernels', '5', '5', '5', '--strides',
                                        '1', '1', '1', '--paddings', '0', '0', '0', '--pools', 'mmm', '--lrs', '0.1',
                                        '0.1', '0.1', '0.1'), '--channels'),
    'laborieux kernel 0': (_set(LAB_CNN, '--kernels', '0', '5'), '--kernels'),
    'laborieux uses --T': (_set(LAB, '--T', '20'), '--T1'),
    'laborieux uses --beta': (_set(LAB, '--beta', '0.1'), '--betas'),
    'laborieux uses --padding': (_set(LAB_CNN, '--padding', '1'), '--paddings'),
    'laborieux momentum with adam': (_set(LAB, '--optim', 'adam', '--mmt', '0.9'), '--mmt'),
    'laborieux CEP decay with lr 0': (_set(LAB, '--alg', 'CEP', '--lrs', '0', '0.1', '--wds', '1e-4', '1e-4'), '--lrs'),
    'laborieux + binary flag': (_set(LAB, '--layersList', '784', '10'), '--layersList'),
    'laborieux tol negative': (_set(LAB, '--tol', '-1e-3'), '--tol'),
    'laborieux tol inf': (_set(LAB, '--tol', 'inf'), '--tol'),
    'laborieux tol-every 0': (_set(LAB, '--tol', '1e-3', '--tol-every', '0'), '--tol-every'),
    'laborieux tol-every without tol': (_set(LAB, '--tol-every', '5'), '--tol-every'),
    'laborieux async VF': (_set(LAB, '--model', 'VFMLP', '--schedule', 'async'), '--schedule'),
    'laborieux carry-delta one-sided': (LAB + ['--carry-delta'], '--carry-delta'),
    'laborieux carry-delta VF': (_set(LAB_CNN, '--model', 'VFCNN', '--thirdphase', '--carry-delta'), '--carry-delta'),
    'laborieux analog tau nan': (_set(LAB, '--analog', 'Analog SGD', '--analog-tau', 'nan'), '--analog-tau'),
    'laborieux analog tau without analog': (_set(LAB, '--analog-tau', '0.6'), '--analog-tau'),
    'laborieux analog with adam': (_set(LAB, '--optim', 'adam', '--analog', 'Analog SGD', '--analog-tau', '0.6'),
                                   '--analog'),
    'laborieux analog unknown preset': (_set(LAB, '--analog', 'TT-v1', '--analog-tau', '0.6', '--analog-preset',
                                             'S9'), '--analog-preset'),
    'laborieux analog reads 0': (_set(LAB, '--analog', 'TT-v1', '--analog-tau', '0.6', '--analog-reads', '0'),
                                 '--analog-reads'),
    'laborieux fast lr without TT': (_set(LAB, '--analog', 'Analog SGD', '--analog-tau', '0.6', '--analog-fast-lr',
                                          '0.1'), '--analog-fast-lr'),
    # ---- EPLCANet
    'eplcanet async LCA': (_set(LCA, '--schedule', 'async'), '--schedule'),
    'eplcanet dictlearn tol': (_set(DICTLEARN, '--tol', '1e-3'), '--tol'),
    'eplcanet lambda negative': (_set(LCA, '--lca_lambda', '-1'), '--lca_lambda'),
    'eplcanet tau 0': (_set(LCA, '--lca_tau', '0'), '--tau'),
    'eplcanet eta nan': (_set(LCA, '--lca_eta', 'nan'), '--eta'),
    'eplcanet lca iters 0': (_set(LCA, '--lca_iters', '0'), '--lca_iters'),
    'eplcanet lca kernel 0': (_set(LCA, '--lca_ksize', '0'), '--lca_ksize'),
    'eplcanet feedback scale negative': (_set(LCA, '--scale_feedback', '-1'), '--scale_feedback'),
    'eplcanet mbs 0': (_set(LCA, '--mbs', '0'), '--mbs'),
    'eplcanet advtrain eps 0': (_set(LCA, '--todo', 'advtrain', '--eps', '0'), '--eps'),
    'eplcanet advtrain eps nan': (_set(LCA, '--todo', 'advtrain', '--eps', 'nan'), '--eps'),
    'eplcanet attack iterations 0': (['--todo', 'attack', '--model', 'CNN', '--task', 'mnist5k', '--attack-iters',
                                      '0', '--dry-run'], '--attack-iters'),
    'eplcanet dictlearn mbs 0': (_set(DICTLEARN, '--mbs', '0'), '--mbs'),
    'eplcanet dictlearn stride 0': (_set(DICTLEARN, '--lca_stride', '0'), '--lca_stride'),
    'eplcanet uses --Kmax': (_set(LCA, '--Kmax', '10'), '--T2'),
    'eplcanet + ernoult flag': (_set(LCA, '--C_tab', '8', '1'), '--C_tab'),
    'eplcanet analog with momentum': (_set(LCA, '--mmt', '0.9', '--analog', 'TT-v1', '--analog-tau', '0.6'),
                                      '--analog'),
    'eplcanet analog tau negative': (_set(LCA, '--analog', 'TT-v1', '--analog-tau', '-0.6'), '--analog-tau'),
    # ---- Laydevant et al. 2021 (binary EP)
    'binary async': (_set(BIN, '--schedule', 'async'), '--schedule'),
    'binary tol 0': (_set(BIN_CONV, '--tol', '0'), '--tol'),
    'binary beta 0': (_set(BIN, '--beta', '0'), '--beta'),
    'binary beta inf': (_set(BIN, '--beta', 'inf'), '--beta'),
    'binary batch 0': (_set(BIN, '--batchSize', '0'), '--batchSize'),
    'binary batch negative': (_set(BIN, '--batchSize', '-2'), '--batchSize'),
    'binary test batch 0': (_set(BIN, '--test_batchSize', '0'), '--test_batchSize'),
    'binary T 0': (_set(BIN, '--T', '0', '--Kmax', '0'), '--T'),
    'binary epochs 0': (_set(BIN, '--epochs', '0'), '--epochs'),
    'binary gamma nan': (_set(BIN, '--gamma', 'nan', '1e-4'), '--gamma'),
    'binary gamma above 1': (_set(BIN, '--gamma', '2', '1e-4'), '--gamma'),
    'binary threshold negative': (_set(BIN, '--gradThreshold', '-1', '5e-7'), '--gradThreshold'),
    'binary bias lr nan': (_set(BIN, '--lrBias', 'nan', '0.05'), '--lrBias'),
    'binary 5 outputs': (_set(BIN, '--layersList', '784', '64', '5'), '--layersList'),
    'binary expand_output 0': (_set(BIN, '--expand_output', '0'), '--expand_output'),
    'binary random_beta 2': (_set(BIN, '--random_beta', '2'), '--random_beta'),
    'binary conv maps vanish': (_set(BIN_CONV, '--convList', '8', '8', '8', '1', '--lrBias', '0.1', '0.1', '0.1',
                                     '0.1'), '--padding'),
    'binary kernel 0': (_set(BIN_CONV, '--kernelSize', '0'), '--kernelSize'),
    'binary seed negative': (_set(BIN, '--seed', '-5'), '--seed'),
    'binary + laborieux flag': (_set(BIN, '--mbs', '20'), '--mbs'),
    'binary + ernoult flag': (_set(BIN, '--lr_tab', '0.1', '0.1'), '--lr_tab'),
    'binary analog': (_set(BIN, '--analog', 'Analog SGD', '--analog-tau', '0.6'), '--analog'),
    # ---- the GPU options on a machine without one (every paper of main.py, after the flags' own checks)
    'ernoult tf32 on the cpu': (_set(ERNOULT, '--precision', 'tf32'), '--precision'),
    'ernoult conv cuda graphs on the cpu': (_set(ERNOULT_CONV, '--cuda-graphs'), '--cuda-graphs'),
    'laborieux bf16 on the cpu': (_set(LAB, '--precision', 'bf16'), '--precision'),
    'laborieux cnn cuda graphs on the cpu': (_set(LAB_CNN, '--cuda-graphs', '--device', '-1'), '--cuda-graphs'),
    'eplcanet tf32 on the cpu': (_set(LCA, '--precision', 'tf32'), '--precision'),
    'binary bf16 on the cpu': (_set(BIN, '--precision', 'bf16'), '--precision'),
    'binary conv cuda graphs on the cpu': (_set(BIN_CONV, '--cuda-graphs'), '--cuda-graphs'),
    'precision unknown': (_set(LAB, '--precision', 'fp16'), '--precision'),
}

# ---- Files given to --load-path / --dictionary (garbage, truncated, foreign or absent checkpoints, a folder without
# its files): one line naming the file and what was expected. Each entry: id -> function(tmp_path) returning
# (argv, the file or flag the message must name); the run folders are written by hand (a command line and the file).
SMALL_LAB = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '16', '10', '--lrs', '0.1', '0.1', '--T1', '4',
             '--T2', '2', '--mbs', '20', '--epochs', '1', '--betas', '0.0', '0.1']
SMALL_ERNOULT = _set(ERNOULT, '--size_tab', '10', '16', '784')
SMALL_BIN = _set(BIN, '--layersList', '784', '16', '10')


def _run_folder(tmp_path, argv, files, hyper='hyperparameters.txt'):
    """A run folder as the suite writes it: its command line first, then the given files (name -> bytes)."""
    folder = tmp_path / 'run'
    folder.mkdir()
    if hyper:
        (folder / hyper).write_text('python main.py ' + ' '.join(argv) + '\n- seed: 1\n')
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return str(folder)


def _torch_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _foreign_checkpoint():
    """A complete Laborieux checkpoint whose weights belong to another architecture (784-32-10)."""
    w = {'synapses.0.weight': torch.zeros(32, 784), 'synapses.0.bias': torch.zeros(32),
         'synapses.1.weight': torch.zeros(10, 32), 'synapses.1.bias': torch.zeros(10)}
    return _torch_bytes({'model': w, 'optimizer': {}, 'scheduler': None, 'generator': torch.Generator().get_state(),
                         'torch_rng': torch.get_rng_state(), 'epoch': 1, 'history': [], 'best': 0.0})


CHECKPOINT_CASES = {
    'laborieux garbage checkpoint': lambda t: (['--load-path', _run_folder(t, SMALL_LAB, {
        'checkpoint.tar': b'this is not a checkpoint'})], 'checkpoint.tar'),
    'laborieux truncated checkpoint': lambda t: (['--load-path', _run_folder(t, SMALL_LAB, {
        'checkpoint.tar': _foreign_checkpoint()[:300]})], 'checkpoint.tar'),
    'laborieux folder without checkpoint': lambda t: (['--load-path', _run_folder(t, SMALL_LAB, {})],
                                                      'checkpoint.tar'),
    'laborieux checkpoint of another net': lambda t: (['--load-path', _run_folder(t, SMALL_LAB, {
        'checkpoint.tar': _foreign_checkpoint()})], 'do not fit'),
    'laborieux checkpoint not a dict': lambda t: (['--load-path', _run_folder(t, SMALL_LAB, {
        'checkpoint.tar': _torch_bytes(torch.zeros(3))})], 'checkpoint.tar'),
    'laborieux evaluate garbage model': lambda t: (['--todo', 'evaluate', '--load-path', _run_folder(t, SMALL_LAB, {
        'model.pt': b'\x00' * 64})], 'model.pt'),
    'laborieux evaluate without model': lambda t: (['--todo', 'evaluate', '--load-path', _run_folder(t, SMALL_LAB, {
    })], 'model.pt'),
    'folder without hyperparameters': lambda t: (['--load-path', _run_folder(t, SMALL_LAB, {}, hyper=None)],
                                                 'hyperparameters.txt'),
    'ernoult garbage checkpoint': lambda t: (['--load-path', _run_folder(t, SMALL_ERNOULT, {
        'checkpoint_EP.pt': b'garbage', 'checkpoint_BPTT.pt': b'garbage'})], 'checkpoint_'),
    'ernoult folder without checkpoint': lambda t: (['--load-path', _run_folder(t, SMALL_ERNOULT, {})],
                                                    'checkpoint_'),
    'binary truncated checkpoint': lambda t: (['--load-path', _run_folder(t, SMALL_BIN, {
        'checkpoint.pt': _torch_bytes({'rows': [1] * 1000})[:200]}, hyper='Hyperparameters.txt')],
        'checkpoint.pt'),
    'binary checkpoint of another run': lambda t: (['--load-path', _run_folder(t, SMALL_BIN, {
        'checkpoint.pt': _torch_bytes({'rows': []})}, hyper='Hyperparameters.txt')], '(no model, optimizer in it)'),
    'eplcanet garbage dictionary': lambda t: (_set(LCA, '--dict_training', 'pretrained', '--dictionary',
                                                   _garbage(t, 'dictionary.pt')), 'dictionary.pt'),
}


def _garbage(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'not a torch file')
    return str(path)


def _assert_usage_error(code, err, flag, results):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('main.py: error:') and flag in lines[0], lines[0]
    assert 'Traceback' not in err
    assert not results.exists() or not any(results.iterdir()), list(results.rglob('*'))


def test_every_paper_has_its_cases():
    for paper in ('ernoult', 'laborieux', 'eplcanet', 'binary'):
        assert sum(c.startswith(paper) for c in CASES) >= 6, paper
    assert len(CASES) >= 30


@pytest.mark.parametrize('case', list(CASES))
def test_bad_command_line(case, tmp_path, capsys):
    argv, flag = CASES[case]
    results = tmp_path / 'results'
    code, folder = run_main(argv + ['--results-dir', str(results)])
    _assert_usage_error(code, capsys.readouterr().err, flag, results)


@pytest.mark.parametrize('case', list(CHECKPOINT_CASES))
def test_bad_checkpoint(case, tmp_path, capsys):
    argv, flag = CHECKPOINT_CASES[case](tmp_path)
    results = tmp_path / 'results'
    code, folder = run_main(argv + ['--results-dir', str(results)])
    _assert_usage_error(code, capsys.readouterr().err, flag, results)


@pytest.mark.parametrize('case', ['ernoult beta 0', 'laborieux mbs 0', 'eplcanet tau 0', 'binary batch 0',
                                  'binary + laborieux flag'])
def test_bad_command_line_from_the_shell(case, tmp_path):
    argv, flag = CASES[case]
    results = tmp_path / 'results'
    r = subprocess.run([sys.executable, 'main.py'] + argv + ['--results-dir', str(results)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    _assert_usage_error(r.returncode, r.stderr, flag, results)


# ---- Dataset files under --data-root that are there but unreadable: one line naming the file, what is wrong and the
# fix, before any folder is made; a dry run refuses them too (it synthesises data only where the files are absent).
def _truncated_cifar(root, name='data_batch_2'):
    return cut(os.path.join(root, 'cifar-10-batches-py', name))


LAB_CIFAR = ['--model', 'CNN', '--task', 'CIFAR10', '--channels', '8', '--kernels', '3', '--pools', 'm', '--strides',
             '1', '--paddings', '1', '--fc', '10', '--lrs', '0.01', '0.01', '--T1', '4', '--T2', '2', '--mbs', '10',
             '--betas', '0.0', '0.5', '--epochs', '1']
# id → function(cifar_root, mnist_root) giving (argv, the file, words the line must hold)
DATA_CASES = {
    'nest dry run truncated cifar10': lambda c, m: (
        ['--config-name=splitting_small', 'data=cifar10', '--data-root', c, '--dry-run'], _truncated_cifar(c),
        'pickle data was truncated'),
    'nest truncated cifar10 test batch': lambda c, m: (
        ['--config-name=splitting_small', 'data=cifar10', '--data-root', c], _truncated_cifar(c, 'test_batch'),
        'pickle data was truncated'),
    'laborieux truncated cifar10': lambda c, m: (LAB_CIFAR + ['--data-root', c], _truncated_cifar(c),
                                                 'pickle data was truncated'),
    'laborieux dry run truncated cifar10': lambda c, m: (LAB_CIFAR + ['--data-root', c, '--dry-run'],
                                                         _truncated_cifar(c), 'pickle data was truncated'),
    'laborieux short mnist': lambda c, m: (_set(SMALL_LAB, '--task', 'MNIST', '--data-root', m), short_mnist(m, body=700),
                                           'its body holds 700'),
    'ernoult short mnist test images': lambda c, m: (_set(SMALL_ERNOULT, '--dataset', 'mnist', '--data-root', m),
                                                     short_mnist(m, train=False, body=700), 'its body holds 700'),
}


@pytest.mark.parametrize('case', list(DATA_CASES))
def test_bad_dataset_file(case, tmp_path, cifar_root, mnist_root, capsys):
    argv, path, words = DATA_CASES[case](cifar_root, mnist_root)
    results = tmp_path / 'results'
    code, _ = run_main(argv + ['--results-dir', str(results)])
    err = capsys.readouterr().err
    _assert_usage_error(code, err, f'main.py: error: {path}: ', results)
    assert words in err and '; ' in err.split(path)[1], err
