"""The typed run configuration (cli.RunConfig): each paper's validation builds it once, frozen; --load-path becomes
`resume` (training picks the folder up) or `model_from` (the model of that folder), and nothing for a dry run whose
folder does not exist."""
import dataclasses
import os

import pytest

from suite import cli
from papers import eplcanet
from papers import ernoult2019
from papers import laborieux2021
from papers import laydevant2021
import main
from suite import trainer

LAB = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '32', '10', '--lrs', '0.05', '0.02', '--T1', '8',
       '--T2', '3']
COMMANDS = {ernoult2019: ['--size_tab', '10', '32', '784', '--lr_tab', '0.04', '0.08'],
            laborieux2021: LAB,
            eplcanet: ['--model', 'EPLCACNN', '--task', 'mnist5k', '--channels', '4', '4', '8', '--kernels', '5', '5',
                       '--strides', '1', '1', '1', '--paddings', '0', '0', '0', '--pools', 'imm', '--lrs', '1e-3',
                       '1e-3', '1e-3', '--T1', '5', '--T2', '2', '--dict_loss', 'recon'],
            laydevant2021: ['--archi', 'fc', '--layersList', '784', '64', '10', '--gamma', '1e-5', '1e-4',
                            '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05']}


def config(paper, argv, tmp_path):
    args = main.build_parser().parse_args(argv + ['--results-dir', str(tmp_path)])
    args.argv_given = argv
    return paper.check_args(cli.finalise_suite_args(args))


@pytest.mark.parametrize('paper', list(COMMANDS), ids=lambda p: p.NAME)
def test_validation_returns_a_frozen_config(paper, tmp_path):
    cfg = config(paper, COMMANDS[paper], tmp_path)
    assert isinstance(cfg, cli.RunConfig) and cfg.resume is None and cfg.model_from is None
    assert isinstance(cfg.seed, int)                        # drawn once, when built
    assert cfg.argv_given == COMMANDS[paper]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3
    assert not os.listdir(tmp_path)                         # validation writes nothing


def test_a_field_of_the_wrong_type_is_an_error(tmp_path):
    cfg = config(laborieux2021, LAB, tmp_path)
    with pytest.raises(TypeError, match='archi'):
        dataclasses.replace(cfg, archi=['784', '10'])


def test_load_path_is_resume_for_train_and_model_from_for_evaluate(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    cfg = config(laborieux2021, LAB + ['--load-path', str(run)], tmp_path / 'r')
    assert (cfg.resume, cfg.model_from) == (str(run), None)
    with pytest.raises(cli.UsageError, match='model.pt'):     # evaluate takes the run's architecture from its model
        config(laborieux2021, LAB + ['--todo', 'evaluate', '--load-path', str(run)], tmp_path / 'r')


def test_dry_run_with_an_absent_folder_has_no_folder(tmp_path, capsys):
    for todo in ('train', 'evaluate', 'gducheck'):
        cfg = config(laborieux2021, LAB + ['--todo', todo, '--load-path', str(tmp_path / 'absent'), '--dry-run'],
                     tmp_path / 'r')
        assert cfg.resume is None and cfg.model_from is None
    assert 'does not exist; using a fresh network' in capsys.readouterr().out


def test_lca_extension_is_the_trainers():
    assert issubclass(eplcanet.LCAExtension, trainer.Extension)
    assert not hasattr(laborieux2021, 'Extension')
