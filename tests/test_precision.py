"""Precision control (issue 13 §3): --dtype float32|float64 for every paper's command line (trainer.dtype for Nest
2024's Hydra line) reaches the checkpointed weights, a bad value is one usage line with exit code 2, and one training
mini-batch of the Laborieux MLP makes no host synchronisation inside its relaxations."""
import glob
import os

import pytest
import torch

from conftest import run_main

ERNOULT = ['--action', 'train', '--discrete', '--size_tab', '10', '16', '784', '--lr_tab', '0.04', '0.08',
           '--epochs', '1', '--T', '8', '--Kmax', '4', '--beta', '0.1', '--dataset', 'mnist5k']
ERNOULT_CONV = ['--action', 'train', '--C_tab', '4', '2', '1', '--size_tab', '10', '--lr_tab', '0.1', '0.1', '0.1',
                '--epochs', '1', '--T', '8', '--Kmax', '4', '--beta', '0.1', '--dataset', 'mnist5k']
LAB = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '16', '10', '--lrs', '0.1', '0.1',
       '--betas', '0.0', '0.1', '--T1', '8', '--T2', '4', '--mbs', '20', '--epochs', '1']
LAB_CNN = ['--model', 'CNN', '--task', 'mnist5k', '--channels', '4', '8', '--kernels', '5', '5', '--strides', '1', '1',
           '--paddings', '0', '0', '--pools', 'mm', '--fc', '10', '--lrs', '0.1', '0.1', '0.1', '--T1', '8', '--T2', '4',
           '--mbs', '20', '--epochs', '1']
EPLCANET = ['--model', 'LCACNN', '--task', 'mnist5k', '--lca_feats', '8', '--channels', '8', '16', '--kernels', '3',
            '3', '--paddings', '1', '1', '--strides', '1', '1', '--pools', 'im', '--fc', '10', '--lrs', '0.1', '0.1',
            '0.1', '--dict_training', 'learn', '--T1', '8', '--T2', '4', '--lca_iters', '5', '--epochs', '1']
BIN = ['--archi', 'fc', '--layersList', '784', '16', '10', '--T', '8', '--Kmax', '4', '--beta', '0.3', '--gamma',
       '1e-5', '1e-4', '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05', '--dataset', 'mnist5k',
       '--epochs', '1', '--learnAlpha', '0']
NEST = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k', 'data.config.batch_size=8']
# (command, checkpoint file, its key holding the weights)
FAMILIES = {'ernoult2019': (ERNOULT, 'checkpoint_EP.pt', 'model'),
            'ernoult2019 conv': (ERNOULT_CONV, 'checkpoint_EP.pt', 'model'),
            'laborieux2021 MLP': (LAB, 'checkpoint.tar', 'model'),
            'laborieux2021 CNN': (LAB_CNN, 'checkpoint.tar', 'model'),
            'eplcanet': (EPLCANET, 'checkpoint.tar', 'model'),
            'laydevant2021': (BIN, 'checkpoint.pt', 'model_state_dict')}


def _weights(folder, name, key):
    ck = torch.load(os.path.join(folder, name), weights_only=False, map_location='cpu')
    sd = ck[key]
    return {k: v for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point()}


@pytest.mark.parametrize('family', list(FAMILIES))
@pytest.mark.parametrize('dtype', ['float64', None])
def test_dtype_reaches_the_checkpoint(family, dtype, tmp_path):
    argv, name, key = FAMILIES[family]
    flag = [] if dtype is None else ['--dtype', dtype]
    code, folder = run_main(argv + flag + ['--dry-run', '--device', '-1', '--seed', '1',
                                           '--results-dir', str(tmp_path)])
    assert code == 0 and folder
    w = _weights(folder, name, key)
    assert w and {v.dtype for v in w.values()} == {getattr(torch, dtype or 'float32')}, family
    hyper = glob.glob(os.path.join(folder, '[Hh]yperparameters.txt'))[0]
    assert (dtype or 'float32') in open(hyper).read()


@pytest.mark.parametrize('dtype', ['float64', 'float32'])
def test_nest2024_trainer_dtype(dtype, tmp_path):
    code, folder = run_main(NEST + [f'trainer.dtype={dtype}', '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0 and folder
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False, map_location='cpu')
    assert {v.dtype for v in ck['model'].values() if v.is_floating_point()} == {getattr(torch, dtype)}
    assert f'dtype: {dtype}' in open(os.path.join(folder, 'config.yaml')).read()


@pytest.mark.parametrize('argv, flag', [(LAB + ['--dtype', 'half'], '--dtype'),
                                        (ERNOULT + ['--dtype', 'float16'], '--dtype'),
                                        (BIN + ['--dtype', '64'], '--dtype'),
                                        (NEST + ['trainer.dtype=bfloat16'], 'trainer.dtype')])
def test_bad_dtype_exits_2(argv, flag, tmp_path, capsys):
    code, _ = run_main(argv + ['--dry-run', '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('main.py: error: ') and '\n' not in err and flag in err, err
    assert not os.listdir(tmp_path)
