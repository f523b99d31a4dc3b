"""Hopfield-ResNet13 and VGG5 (papers/hopfield_resnet): routing of the authors' flags, usage errors, a short mnist5k
run of each net that writes its folder and resumes as if uninterrupted, and the BPTT algorithm on the same graph."""
import os

import pandas as pd
import pytest
import torch

from conftest import assert_resume_equals_uninterrupted, run_main


pytestmark = pytest.mark.usefixtures('one_thread')


def base(network):
    return ['--network', network, '--dataset', 'mnist5k', '--width', '0.015625', '--activation', 'hard-sigmoid',
            '--num_iterations_inference', '4', '--num_iterations_training', '2', '--batch_size', '1000',
            '--learning_rates_weights', '0.05', '--learning_rates_biases', '0.05', '--beta', '0.2', '--seed', '1',
            '--threads', '1']


def test_the_authors_flags_route_to_this_paper():
    import main
    from papers import hopfield_resnet
    argv = ['--network', 'vgg5', '--num_iterations_inference', '120', '--num_iterations_training', '50',
            '--weight_gains', '0.4,0.7,0.6,0.3,0.6', '--learning_rates_weights', '0.03', '--learning_rates_biases',
            '0.03', '--lossfn', 'MSE', '--use_warm_restarts', '--batch_size', '128', '--momentum', '0.9',
            '--weight_decay', '2.5e-4', '--optimizer', 'sgd', '--activation', 'relu6', '--beta', '0.1', '--dataset',
            'CIFAR10', '--epochs', '300']
    assert main.paper_of(argv) is hopfield_resnet
    for flag in ('--lossfn', '--momentum', '--width', '--algorithm', '--optimizer'):
        assert flag in hopfield_resnet.FLAGS


BAD = {
    'other paper': (['--network', 'vgg5', '--T1', '5'], '--T1'),
    'shared flag not used': (['--network', 'vgg5', '--optim', 'sgd'], '--optim'),
    'gains': (['--network', 'vgg5', '--weight_gains', '0.1,0.2'], '--weight_gains'),
    'lrs': (['--network', 'hopfieldresnet13', '--learning_rates_weights', '0.1,0.2'], '--learning_rates_weights'),
    'dataset': (['--network', 'vgg5', '--dataset', 'imagenet'], '--dataset'),
    'activation': (['--network', 'vgg5', '--activation', 'gelu'], '--activation'),
    'beta 0': (['--network', 'vgg5', '--beta', '0'], '--beta'),
    'width': (['--network', 'vgg5', '--width', '0'], '--width'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input_is_one_usage_line(case, tmp_path, capsys):
    argv, flag = BAD[case]
    code, _ = run_main(argv + ['--results-dir', str(tmp_path / 'r')])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err, err
    assert not os.path.exists(tmp_path / 'r') or not any(os.scandir(tmp_path / 'r'))


@pytest.mark.parametrize('network', ['hopfieldresnet13', 'vgg5'])
def test_short_mnist5k_run_writes_its_folder_and_resumes(network, tmp_path):
    folder = assert_resume_equals_uninterrupted(base(network), tmp_path)
    files = os.listdir(folder)
    for f in ('hyperparameters.txt', 'metrics.csv', 'checkpoint.tar', 'final_model.pt', 'plotFunctions.py'):
        assert f in files, files
    assert any(f.endswith('.png') for f in files)
    m = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    assert list(m['epoch']) == [1, 2] and m['lr'].iloc[1] < m['lr'].iloc[0]        # cosine annealing
    text = open(os.path.join(folder, 'hyperparameters.txt')).read()
    assert network in text and 'layer groups' in text


def test_bptt_trains_the_same_graph(tmp_path):
    code, folder = run_main(base('hopfieldresnet13') + ['--algorithm', 'BPTT', '--activation', 'reluclip', '--lossfn',
                                                        'CE', '--optimizer', 'adam', '--use_warm_restarts',
                                                        '--epochs', '1', '--results-dir', str(tmp_path)])
    assert code == 0 and os.path.relpath(folder, tmp_path).split(os.sep)[:2] == ['hopfieldresnet13', 'BPTT']
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
    cs = [v.item() for k, v in ck['model'].items() if k.endswith('rho.hi')]
    assert len(cs) == 8 and all(1 <= c <= 10 for c in cs)


def test_fashion_mnist_is_read_from_idx_files_and_padded(tmp_path):
    """Fashion-MNIST in MNIST's idx layout under --data-root/fashion-mnist/: a run reads it, 28×28 padded to 32×32."""
    import gzip
    from conftest import idx_bytes
    from papers import hopfield_resnet
    from suite import data
    folder = tmp_path / 'fashion-mnist'
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for train, n in ((True, 12), (False, 8)):
        imgs = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        names = data.MNIST_FILES[train]
        (folder / names[0]).write_bytes(idx_bytes((n, 28, 28), imgs.numpy().tobytes()))
        with gzip.open(folder / (names[1] + '.gz'), 'wb') as f:
            f.write(idx_bytes((n,), labels.numpy().tobytes()))
    x, y = data.load_fashion_mnist(str(tmp_path), True)
    assert x.shape == (12, 1, 28, 28) and 0 <= x.min() and x.max() <= 1 and y.tolist()[:3] == [0, 1, 2]
    code, folder = run_main(base('vgg5') + ['--dataset', 'FashionMNIST', '--data-root', str(tmp_path), '--epochs',
                                            '1', '--results-dir', str(tmp_path / 'r')])
    assert code == 0 and 'FashionMNIST' in open(os.path.join(folder, 'hyperparameters.txt')).read()
    with pytest.raises(data.DataError):
        data.load_fashion_mnist(str(tmp_path / 'none'), False)
    assert hopfield_resnet.SETTINGS['FashionMNIST'][2] == 0.15
