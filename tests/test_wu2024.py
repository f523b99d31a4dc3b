"""Wu et al. 2024's scripts (papers/wu2024): every README command dry-runs, the CSVs have the documented columns, each
result folder redraws its figure, bad input is one line and exit code 2, and the pieces the experiments rest on
(toy gradient, final-accuracy summary, saturation, torchvision-keyed ResNets, A12's parameter groups, S4 checkpoints
read by S6) compute what they say."""
import contextlib
import io
import os
import shlex
import subprocess
import sys

import pandas as pd
import pytest
import torch

import analog
import netClasses
from papers.wu2024 import nets as wu_nets
from papers import wu2024
from papers.wu2024 import classify, cli, figures
from papers.wu2024 import toy as wu_toy
from conftest import ROOT, cut, redraw, short_mnist
from suite import data
from test_resume import _interrupt_in_epoch

CHECK = os.path.join(ROOT, 'check', 'wu2024.sh')


@pytest.fixture(autouse=True)
def _one_thread():
    """One CPU thread: the simulator's element-wise ops on small arrays are many times slower with two contending
    threads on a loaded machine (after conftest's fixture, which sets 2)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def commands():
    lines = [ln.strip() for ln in open(CHECK) if ln.startswith('python ')]
    return [shlex.split(ln.replace('${CUDA_IDX}', '0')) for ln in lines]


def run(script, argv, tmp_path, dry=True):
    """wu2024.main in-process under tmp_path; returns (exit code, folder or None)."""
    extra = ['--dry-run'] if dry else []
    try:
        return 0, wu2024.main(script, argv + extra + ['--results-dir', str(tmp_path), '--seed', '0'])
    except SystemExit as e:
        return e.code, None


def test_check_script_has_every_readme_command():
    """The 34 commands of the seed README, one script per line, each script an entry point at the root."""
    cmds = commands()
    assert len(cmds) == 34
    assert {c[1][:-3] for c in cmds} == set(cli.SCRIPTS)
    for c in cmds:
        assert os.path.isfile(os.path.join(ROOT, c[1]))


@pytest.mark.parametrize('argv', commands(), ids=lambda a: ' '.join(a[1:]))
def test_readme_command_dry_runs(argv, tmp_path):
    code, folder = run(argv[1][:-3], argv[2:], tmp_path)
    assert code == 0
    assert os.path.relpath(folder, tmp_path).split(os.sep)[:3] == ['dry-run', 'analog', argv[1][:-3]]
    files = os.listdir(folder)
    with open(os.path.join(folder, 'hyperparameters.txt')) as f:
        assert f.readline().startswith(f'python {argv[1]} ')
    assert 'plotFunctions.py' in files
    assert any(f.endswith('.png') for f in files) and any(f.endswith('.pdf') for f in files), files
    assert any(f.endswith('.csv') for f in files), files


# ---------------------------------------------------------------------------------------------------------------
# Outputs of the toy scripts

@pytest.fixture(scope='module')
def toy_folders(tmp_path_factory):
    """{script: (folder, stdout)} of dry runs of S1 and S2."""
    out = {}
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    for script in ('S1-SGD-diff-lr', 'S2-dynamic-verification'):
        with contextlib.redirect_stdout(io.StringIO()) as text:
            code, folder = run(script, [], tmp_path_factory.mktemp(script))
        assert code == 0
        out[script] = folder, text.getvalue()
    torch.set_num_threads(n)
    return out


def test_s1_final_loss_csv(toy_folders):
    folder, _ = toy_folders['S1-SGD-diff-lr']
    df = pd.read_csv(os.path.join(folder, 'final_loss.csv'))
    assert list(df.columns) == ['lr', 'curve', 'final_loss']
    assert set(df['curve']) == {'digital', 'analog', 'tt'} and set(df['lr']) == {0.2, 0.1, 0.05, 0.03}
    curves = pd.read_csv(os.path.join(folder, 'curves.csv'))
    assert list(curves.columns) == ['lr', 'curve', 'iteration', 'loss'] and len(curves) == 12 * wu_toy.DRY_ITERATIONS
    # the final loss is the mean of the last 20 logged losses of its curve
    g = curves[(curves['lr'] == 0.1) & (curves['curve'] == 'tt')]
    assert df[(df['lr'] == 0.1) & (df['curve'] == 'tt')]['final_loss'].item() == pytest.approx(
        g['loss'].tail(20).mean(), rel=1e-6)


def test_s2_final_loss_csv_and_saturation(toy_folders):
    folder, out = toy_folders['S2-dynamic-verification']
    df = pd.read_csv(os.path.join(folder, 'final_loss.csv'))
    assert list(df.columns) == ['tau', 'curve', 'final_loss']
    assert set(df['curve']) == {'digital', 'closed_form', 'simulation'} and set(df['tau']) == {1.0, 1.5, 2.0, 2.5}
    sat = pd.read_csv(os.path.join(folder, 'saturation.csv'))
    assert ((sat['max_saturation'] >= sat['mean_saturation']) & (sat['max_saturation'] <= 1)).all()
    assert out.count('saturation |W|/bound') == 8, out           # printed: closed form and simulation per τ


@pytest.mark.parametrize('script', ['S1-SGD-diff-lr', 'S2-dynamic-verification'])
def test_toy_folder_redraws(toy_folders, script):
    before, after = redraw(toy_folders[script][0])
    assert before == after and after


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the flag, no folder

BAD = {
    'unknown setting': ('S4.1-mnist-FCN', ['--SETTING=SGD', '--tau=0.6'], '--SETTING'),
    'tau 0': ('S4.1-mnist-FCN', ['--SETTING=Analog SGD', '--tau=0'], '--tau'),
    'tau negative': ('S4.2-mnist-CNN', ['--SETTING=TT-v1', '--tau=-0.6'], '--tau'),
    'tau nan': ('A12-resnet-finetune', ['--optimizer=TT-v1', '--tau=nan', '--weights', 'none'], '--tau'),
    'unknown optimizer': ('A12-resnet-finetune', ['--optimizer=Adam', '--weights', 'none'], '--optimizer'),
    'unknown model': ('A12-resnet-finetune', ['--model=Resnet101', '--weights', 'none'], '--model'),
    'weights file missing': ('A12-resnet-finetune', ['--weights', '/nonexistent/resnet18.pth'], '--weights'),
    'no weights found': ('A12-resnet-finetune', ['--data-root', '/nonexistent'], '--weights'),
    'S6 checkpoint missing': ('S6-plot-distribution', ['--analog', '/nonexistent/model.pt'], '--analog'),
    'S6 no checkpoint found': ('S6-plot-distribution', [], '--fp'),
    'no S4 runs to plot': ('S4.1-plot-FCN', [], '--runs'),
    'bad epochs': ('S4.1-mnist-FCN', ['--epochs', '0'], '--epochs'),
    'unknown dataset': ('S4.1-mnist-FCN', ['--dataset', 'cifar10'], '--dataset'),
    'unknown flag': ('S1-SGD-diff-lr', ['--SETTING', 'TT-v1'], '--SETTING'),
    'MNIST files absent': ('S4.1-mnist-FCN', ['--data-root', '/nonexistent'], 'mnist5k'),
    'evaluate without a run': ('S4.1-mnist-FCN', ['--evaluate'], '--evaluate'),
    'no run folder': ('S4.2-mnist-CNN', ['--load-path', '/nonexistent'], '--load-path'),
}


@pytest.mark.parametrize('case', BAD)
def test_bad_input_is_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))        # no ImageNet weights in a hub cache
    script, argv, flag = BAD[case]
    code, _ = run(script, argv, tmp_path, dry=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f'{script}.py: error: ') and flag in err[0], err
    assert not os.path.exists(tmp_path / 'analog')


def _metrics(tmp_path, text, folder='runs/a'):
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / 'metrics.csv').write_text(text)
    return str(tmp_path / folder / 'metrics.csv')


def _model_pt(tmp_path, obj):
    torch.save(obj, tmp_path / 'model.pt')
    return str(tmp_path / 'model.pt')


def _fcn_arrays(setting):
    return {'setting': setting, 'arrays': figures.arrays(analog.convert(wu_nets.FCN(),
                                                                       analog.rpu_config(setting, 0.7, 'S4')))}


def _looked_up_run(tmp_path):
    """An S4.1 run folder with a model.pt and a metrics.csv of something else, where S6 looks for checkpoints."""
    path = _metrics(tmp_path, 'step,loss\n1,0.5\n', 'analog/S4.1-mnist-FCN/2026-01-01/10-00-00')
    torch.save(_fcn_arrays('Analog SGD'), os.path.join(os.path.dirname(path), 'model.pt'))
    return path


# Files that are there but wrong: id → function(tmp_path, cifar_root, mnist_root) giving (script, argv, the file
# the line must name, words it must hold); each is refused before a result folder is claimed, also in a dry run.
BAD_FILES = {
    'S4.1-plot metrics without tau': lambda t, c, m: (
        'S4.1-plot-FCN', ['--runs', str(t / 'runs')], _metrics(t, 'epoch,setting,test_acc\n1,FP SGD,10\n'),
        'no tau column'),
    'S4.2-plot empty metrics': lambda t, c, m: (
        'S4.2-plot-CNN', ['--runs', str(t / 'runs')], _metrics(t, ''), 'not a readable CSV'),
    'S4.1-plot metrics without epochs': lambda t, c, m: (
        'S4.1-plot-FCN', ['--runs', str(t / 'runs')], _metrics(t, 'epoch,setting,tau,test_acc\n'), 'no epoch'),
    'S6 arrays not a dict': lambda t, c, m: (
        'S6-plot-distribution', ['--fp', _model_pt(t, {'arrays': [1, 2]})], str(t / 'model.pt'),
        'not a dict of layers'),
    'S6 Analog SGD model for TT-v1': lambda t, c, m: (
        'S6-plot-distribution', ['--tt', _model_pt(t, _fcn_arrays('Analog SGD'))], str(t / 'model.pt'),
        'no C array (saved by a --SETTING="Analog SGD" run)'),
    'S6 looked-up run with foreign metrics': lambda t, c, m: (
        'S6-plot-distribution', ['--tau', '0.7'], _looked_up_run(t), 'no epoch, setting, tau, test_acc column'),
    'S4.1 short MNIST idx file': lambda t, c, m: (
        'S4.1-mnist-FCN', ['--dataset', 'mnist', '--data-root', m], short_mnist(m), 'its body holds 1000'),
    'A12 truncated CIFAR-10 batch': lambda t, c, m: (
        'A12-resnet-finetune', ['--data-root', c, '--weights', 'none'], cut(os.path.join(c, 'cifar-10-batches-py', 'test_batch')),
        'pickle data was truncated'),
}


@pytest.mark.parametrize('case,dry', [(c, d) for c in BAD_FILES for d in (False, True)
                                      if d or not c.startswith('S6')])   # S6 needs all three checkpoints undry
def test_a_bad_file_is_one_line_naming_it(case, dry, tmp_path, cifar_root, mnist_root, capsys):
    script, argv, path, words = BAD_FILES[case](tmp_path, cifar_root, mnist_root)
    before = sorted(tmp_path.rglob('*'))
    code, _ = run(script, argv, tmp_path, dry=dry)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f'{script}.py: error: {path}: ') and words in err[0] and '; ' in err[0], err
    assert sorted(tmp_path.rglob('*')) == before                     # no result folder, not even a half-made one


def test_bad_input_from_the_shell(tmp_path):
    """The entry script itself: exit 2, one line on stderr, no traceback."""
    r = subprocess.run([sys.executable, 'S3.2-ablation-sigma.py', '--seed', 'x'], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.startswith('S3.2-ablation-sigma.py: error: argument --seed')


def test_absent_gpu_warns_and_runs_on_cpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    code, folder = run('S4.1-mnist-FCN', ['--CUDA=3', '--dataset', 'mnist5k'], tmp_path)
    err = capsys.readouterr().err
    assert code == 0 and 'S4.1-mnist-FCN.py: warning: --CUDA 3: no such CUDA device here; running on the CPU' in err


# ---------------------------------------------------------------------------------------------------------------
# MNIST runs, their summary (S4 plot scripts) and their checkpoints (S6)

def test_s4_runs_summary_and_s6_histograms(tmp_path, capsys):
    runs = {}
    for setting, tau in (('FP SGD', None), ('Analog SGD', 0.7), ('TT-v1', 0.7)):
        argv = [f'--SETTING={setting}', '--dataset', 'mnist5k', '--save-checkpoint'] + ([f'--tau={tau}'] if tau else [])
        code, runs[setting] = run('S4.1-mnist-FCN', argv, tmp_path)
        assert code == 0
    metrics = pd.read_csv(os.path.join(runs['TT-v1'], 'metrics.csv'))
    assert {'epoch', 'setting', 'tau', 'test_acc', 'train_loss', 'lr', 'seconds'} <= set(metrics.columns)
    # the checkpoint restores the model exactly
    ck = torch.load(os.path.join(runs['TT-v1'], 'model.pt'), weights_only=False)
    model = analog.convert(wu_nets.FCN(), analog.rpu_config('TT-v1', 0.7, 'S4'))
    model.load_state_dict(ck['model'])
    assert torch.equal(model[1].weights()['C'], ck['arrays']['1']['C'])
    # S4.1-plot: one row per (setting, τ)
    code, folder = run('S4.1-plot-FCN', ['--runs', str(tmp_path / 'dry-run' / 'analog' / 'S4.1-mnist-FCN')], tmp_path)
    final = pd.read_csv(os.path.join(folder, 'final_accuracy.csv'))
    assert code == 0 and sorted(final['setting']) == ['Analog SGD', 'FP SGD', 'TT-v1']
    assert final.set_index('setting').loc['TT-v1', 'final_acc'] == pytest.approx(metrics['test_acc'].iloc[-1])
    before, after = redraw(folder)
    assert before == after == ['FCN-accuracy.png']
    # S6 with the three checkpoints given by flag: every weight counted once in [0, 1] saturation bins
    code, folder = run('S6-plot-distribution', ['--fp', runs['FP SGD'], '--analog', runs['Analog SGD'],
                                                '--tt', runs['TT-v1']], tmp_path, dry=False)
    assert code == 0
    sat = pd.read_csv(os.path.join(folder, 'saturation_hist.csv'))
    n_weights = 784 * 256 + 256 * 128 + 128 * 10
    assert sat.groupby('setting')['count'].sum().to_dict() == {'Analog SGD': n_weights, 'TT-v1': n_weights}
    before, after = redraw(folder)
    assert before == after == ['weight-distribution.png']


def test_s4_test_loss_is_the_originals(tmp_path):
    """metrics.csv's test_loss is the original's: the test mini-batches' mean NLL times their sizes, summed, divided
    by the number of images (aihwkit's LeNet example, which S4.2 copies: total_loss += loss.item() · images.size(0),
    / len(dataset)), i.e. the mean per-sample NLL of trainer.evaluate; recomputed from the saved FP SGD model."""
    code, folder = run('S4.1-mnist-FCN', ['--SETTING=FP SGD', '--dataset', 'mnist5k', '--save-checkpoint'], tmp_path)
    assert code == 0
    model = wu_nets.FCN()
    model.load_state_dict(torch.load(os.path.join(folder, 'model.pt'), weights_only=False)['model'])
    x, y = data.load_or_synthetic('mnist5k', './data', False, True)
    total, images = 0.0, 0
    with torch.no_grad():
        for xb, yb in data.Batches(x, y, classify.MNIST['S4.1-mnist-FCN']['batch_size'],
                                   max_batches=classify.DRY_BATCHES):
            total += torch.nn.functional.nll_loss(model(xb), yb).item() * len(yb)
            images += len(yb)
    logged = pd.read_csv(os.path.join(folder, 'metrics.csv'))['test_loss'].iloc[-1]
    assert logged == pytest.approx(total / images, rel=1e-6)


def test_s6_finds_the_newest_checkpoints(tmp_path):
    """Without flags S6 picks, per setting, the newest S4.1 run saved at --tau (FP SGD: any τ)."""
    # folders as S4.1 writes them (the lookup reads their metrics.csv and the presence of model.pt only)
    root = tmp_path / 'analog' / 'S4.1-mnist-FCN' / '2026-01-01'
    for i, (setting, tau) in enumerate((('FP SGD', None), ('Analog SGD', 0.7), ('TT-v1', 0.7), ('TT-v1', 0.8))):
        d = root / f'10-00-0{i}'
        d.mkdir(parents=True)
        pd.DataFrame({'epoch': [1], 'setting': [setting], 'tau': [tau], 'test_acc': [90.0]}).to_csv(
            d / 'metrics.csv', index=False)
        (d / 'model.pt').write_bytes(b'')
    args = cli.build_parser('S6-plot-distribution').parse_args(['--results-dir', str(tmp_path)])
    args.results_root = args.results_dir
    assert cli.find_checkpoint('TT-v1', '--tt', None, args) == str(root / '10-00-02' / 'model.pt')
    assert cli.find_checkpoint('FP SGD', '--fp', None, args) == str(root / '10-00-00' / 'model.pt')


# ---------------------------------------------------------------------------------------------------------------
# The pieces

@pytest.mark.parametrize('half,bias', [(True, 0.0), (False, 0.1)])
def test_toy_gradient_is_autograd_of_the_loss(half, bias):
    toy = wu_toy.Toy(7, 11, 0.5, 1.0, half, bias, 3, (0.1,), (1.0,), (0.0,), 'S3.3', 0.8)
    A, Y = wu_toy.make_problem(toy, torch.Generator().manual_seed(0))
    W, b = torch.randn(1, 7, requires_grad=True), torch.tensor(0.3, requires_grad=True)
    wu_toy.toy_loss(toy, A, Y, W, b).backward()
    gW, gb = wu_toy.toy_grad(toy, A, Y, W.detach(), b.detach())
    assert torch.allclose(gW, W.grad, atol=1e-6) and torch.allclose(gb, b.grad, atol=1e-6)


def test_closed_form_floor_grows_as_tau_shrinks():
    """S2's problem with the closed form: without gradient noise the drift −(α/τ)|g|⊙W vanishes at the optimum and
    digital and analog both converge; with σ = 0.1 the analog error floor is above the digital one and grows as τ
    shrinks (the paper's asymptotic error ∝ σ² and saturation)."""
    toy = wu_toy.TOYS['S2-dynamic-verification']
    gen = torch.Generator().manual_seed(0)
    A, Y = wu_toy.make_problem(toy, gen)
    floor = {}
    for tau in (float('inf'), 2.0, 1.0):
        for sigma in (0.0, 0.1):
            losses = wu_toy.dynamic(toy, A, Y, 0.03, tau, sigma, gen, iterations=2500)[0]
            floor[tau, sigma] = losses[-200:].mean().item()
            assert losses[0] > 0.01
    assert max(floor[t, 0.0] for t in (float('inf'), 2.0, 1.0)) < 0.05 * floor[float('inf'), 0.1]
    assert floor[1.0, 0.1] > 1.5 * floor[2.0, 0.1] > 3 * floor[float('inf'), 0.1]


def test_summary_is_mean_of_last_five_epochs_and_mean_std():
    acc = [[90, 91, 92, 93, 94, 95, 96], [92, 93, 94, 95, 96, 97, 98, 99]]
    frames = [pd.DataFrame({'epoch': range(1, len(a) + 1), 'setting': 'TT-v1', 'tau': 0.6, 'test_acc': a})
              for a in acc]
    curves, final = figures.summarise(frames + [pd.DataFrame({'epoch': [1], 'setting': 'FP SGD', 'tau': [None],
                                                             'test_acc': [97.0]})])
    tt = final.set_index('setting').loc['TT-v1']
    assert tt['epochs'] == 7 and tt['repeats'] == 2
    assert tt['final_acc'] == pytest.approx(95.0)            # mean over epochs 3..7 of (91 + 93 + …) / 2
    assert tt['final_std'] == pytest.approx(2 ** 0.5)        # std of each pair (a, a + 2)
    assert final.set_index('setting').loc['FP SGD', 'final_acc'] == 97.0


def test_saturation_per_side_and_at_zero_bounds():
    W = torch.tensor([0.3, -0.3, 0.0, 0.0])
    b_min, b_max = torch.tensor([-1.0, -0.6, -1.0, -1.0]), torch.tensor([0.6, 1.0, 0.0, 1.0])
    assert torch.allclose(figures.saturation(W, b_min, b_max), torch.tensor([0.5, 0.5, 1.0, 0.0]))


def test_resnets_have_torchvisions_shapes_and_names():
    """Parameter counts of torchvision's resnet18/34/50 and their state-dict names."""
    counts = {'Resnet18': 11689512, 'Resnet34': 21797672, 'Resnet50': 25557032}
    for name, n in counts.items():
        m = wu_nets.ResNet(*wu_nets.RESNETS[name])
        assert sum(p.numel() for p in m.parameters()) == n
    keys = wu_nets.ResNet(*wu_nets.RESNETS['Resnet50']).state_dict()
    for k in ('conv1.weight', 'bn1.running_var', 'layer1.0.downsample.0.weight', 'layer1.0.conv3.weight',
              'layer4.2.bn3.num_batches_tracked', 'fc.bias'):
        assert k in keys
    assert 'layer1.0.downsample.0.weight' not in wu_nets.ResNet(*wu_nets.RESNETS['Resnet18']).state_dict()


def test_a12_loads_a_weights_file_and_rejects_another_model(tmp_path, capsys):
    path = tmp_path / 'resnet18.pth'
    torch.save(wu_nets.ResNet(*wu_nets.RESNETS['Resnet18']).state_dict(), path)
    code, folder = run('A12-resnet-finetune', ['--model=Resnet18', '--optimizer=Analog SGD', '--weights', str(path)],
                       tmp_path)
    assert code == 0 and f'- ImageNet weights: {path}' in open(os.path.join(folder, 'hyperparameters.txt')).read()
    capsys.readouterr()
    code, _ = run('A12-resnet-finetune', ['--model=Resnet34', '--weights', str(path)], tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0] and 'resnet34-b627a593.pth' in err[0], err


def test_a12_groups_give_the_whole_analog_head_the_full_rate():
    model = wu_nets.ResNet(*wu_nets.RESNETS['Resnet18'])
    model.fc = analog.convert(torch.nn.Linear(512, 10), analog.rpu_config('TT-v1', 0.8, 'S5'))
    body, head = classify.param_groups(model, 0.075)
    assert body['lr'] == pytest.approx(0.0075) and head['lr'] == 0.075
    assert {id(p) for p in head['params']} == {id(p) for p in model.fc.parameters()}
    assert any(getattr(p, 'analog_layer', None) is model.fc for p in head['params'])      # the analog weights
    assert len(body['params']) + len(head['params']) == len(list(model.parameters()))
    for p in model.parameters():                              # without -FFT only the head learns
        p.requires_grad_(False)
    model.fc.bias.requires_grad_(True)
    assert len(classify.param_groups(model, 0.15)) == 1


def test_tensorboard_events_when_tensorboard_imports(tmp_path):
    """The original plot scripts read TensorBoard's Accuracy/test: written per epoch when tensorboard imports."""
    pytest.importorskip('tensorboard')
    accumulator = pytest.importorskip('tensorboard.backend.event_processing.event_accumulator')
    code, folder = run('S4.1-mnist-FCN', ['--SETTING=Analog SGD', '--tau=0.6'], tmp_path)
    events = accumulator.EventAccumulator(os.path.join(folder, 'tensorboard'))
    events.Reload()
    acc = pd.read_csv(os.path.join(folder, 'metrics.csv'))['test_acc']
    assert code == 0 and [e.value for e in events.Scalars('Accuracy/test')] == pytest.approx(list(acc / 100))


# ---------------------------------------------------------------------------------------------------------------
# S4 / A12 on the suite's run layer: the design-card methods, checkpoints, resume, evaluate

def test_a_training_minibatch_goes_through_the_wrapper_methods(tmp_path, monkeypatch):
    """S4.1's mini-batch: Feedforward.forward (with its graph), computeGradients, updateWeights, in that order."""
    log = []
    for name in ('forward', 'computeGradients', 'updateWeights'):
        orig = getattr(netClasses.Feedforward, name)

        def spy(self, *a, _orig=orig, _name=name, **kw):
            log.append(_name)
            return _orig(self, *a, **kw)
        monkeypatch.setattr(netClasses.Feedforward, name, spy)
    code, _ = run('S4.1-mnist-FCN', ['--SETTING=TT-v1', '--dataset', 'mnist5k'], tmp_path)
    assert code == 0
    assert log[:3] == ['forward', 'computeGradients', 'updateWeights'], log[:6]
    assert log.count('computeGradients') == log.count('updateWeights') == classify.DRY_BATCHES


def _state(folder):
    """The weights of a run's checkpoint (the analog tiles' arrays and counters included) and its metrics."""
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
    metrics = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    return ck, metrics[[c for c in metrics.columns if 'seconds' not in c]]


@pytest.mark.parametrize('setting', ['FP SGD', 'TT-v1'])
def test_ctrl_c_leaves_a_folder_that_resumes(setting, tmp_path, monkeypatch, capsys):
    """Ctrl-C in epoch 2 of 3: exit 130 and the resume command; that command, as printed, ends at epoch 3 with the
    weights (TT-v1: A, C, the device constants, the transfer column) and metrics of an uninterrupted run."""
    argv = [f'--SETTING={setting}', '--tau=0.6', '--dataset', 'mnist5k', '--epochs', '3']
    code, full = run('S4.1-mnist-FCN', argv, tmp_path / 'a')
    assert code == 0
    _interrupt_in_epoch(monkeypatch, 2)
    capsys.readouterr()
    code, _ = run('S4.1-mnist-FCN', argv, tmp_path / 'b')
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith('S4.1-mnist-FCN.py')]
    assert code == 130 and len(err) == 1 and 'interrupted in epoch 2' in err[0], err
    folder = err[0].split('--load-path ')[-1]
    assert err[0].endswith(f'checkpoint of epoch 1: resume with python S4.1-mnist-FCN.py --load-path {folder}')
    monkeypatch.undo()
    printed = err[0].split('resume with ')[-1].split()
    code = 0
    try:
        resumed = wu2024.main(printed[1][:-3], printed[2:])
    except SystemExit as e:
        code = e.code
    assert code == 0 and resumed == folder
    assert 'resuming at epoch 2 of 3' in capsys.readouterr().out
    (a, ma), (b, mb) = _state(full), _state(folder)
    assert a['epoch'] == b['epoch'] == 3 and a['model'].keys() == b['model'].keys()
    for k, v in a['model'].items():
        assert torch.equal(v, b['model'][k]) if torch.is_tensor(v) else v == b['model'][k], k
    if setting == 'TT-v1':
        assert a['model']['1._extra_state'] == {'batches': 6, 'column': [6, 6]}      # 784 inputs: two tiles
    pd.testing.assert_frame_equal(ma, mb)
    lines = open(os.path.join(folder, 'hyperparameters.txt')).read().splitlines()
    assert lines[0].startswith('python S4.1-mnist-FCN.py ') and lines[-1] == f'python S4.1-mnist-FCN.py --load-path {folder}'


def test_evaluate_and_extend_a_saved_run(tmp_path, capsys):
    """--evaluate --load-path: the run's last model tested as in its last epoch (printed, appended to its
    hyperparameters.txt, not as a command line); --epochs given again extends the run to the new total."""
    code, folder = run('S4.1-mnist-FCN', ['--SETTING=FP SGD', '--dataset', 'mnist5k', '--epochs', '2'], tmp_path)
    assert code == 0
    last = pd.read_csv(os.path.join(folder, 'metrics.csv')).iloc[-1]
    capsys.readouterr()
    assert wu2024.main('S4.1-mnist-FCN', ['--load-path', folder, '--evaluate']) == folder
    out = capsys.readouterr().out
    assert f'test after epoch 2: loss {last["test_loss"]:.4f}, accuracy {last["test_acc"]:.2f} %' in out, out
    text = open(os.path.join(folder, 'hyperparameters.txt')).read()
    assert f'evaluated with: python S4.1-mnist-FCN.py --load-path {folder} --evaluate' in text
    assert wu2024.main('S4.1-mnist-FCN', ['--load-path', folder, '--epochs', '3']) == folder
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
    assert ck['epoch'] == 3 and [r['epoch'] for r in ck['history']] == [1, 2, 3]
    assert len(pd.read_csv(os.path.join(folder, 'metrics.csv'))) == 3


def test_plateau_bench_reads_scales_and_saturation(mnist5k):
    """bench/wu_s41_plateau.py: the S4.1 model of each setting through trainer.train, the learned output scales where
    the configuration has them, saturation only for analog weights; its table has a row per setting and step count."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('wu_s41_plateau', os.path.join(ROOT, 'bench', 'wu_s41_plateau.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [r for s in bench.SETTINGS for r in bench.run(s, 0.6, 0, 3, mnist5k)]
    by = {(r['setting'], r['steps']): r for r in rows}
    assert sorted({r['steps'] for r in rows}) == [0, 3]
    assert by['FP SGD', 3]['out_scales'] == '-' and by['FP SGD', 3]['pct_above_0_9'] is None
    assert by['Analog SGD, no out scale', 3]['out_scales'] == '-'
    assert by['Analog SGD', 0]['out_scales'] == '1.000/1.000/1.000'
    assert len(by['TT-v1', 3]['out_scales'].split('/')) == 3
    assert by['Analog SGD', 3]['out_scales'] != '1.000/1.000/1.000'          # the scales learn
    assert 0 <= by['TT-v1', 3]['pct_above_0_9'] < 1
    table = bench.table(rows, 3).splitlines()
    assert len(table) == 2 + 2 * len(bench.SETTINGS)
