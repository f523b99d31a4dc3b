"""What Wu et al. 2024's scripts write and draw: every script's result folder, the saturation |w|/bound tables, the
S4 summaries (S4.1-plot / S4.2-plot: test accuracy averaged over repeats) and the S6 weight and saturation
histograms."""
import os

import numpy as np
import torch
import torch.nn as nn

import analog
from papers.wu2024 import nets as wu_nets
from suite import checkpoints
from suite import rundir
from suite import trainer
from suite.cli import UsageError, say

S6_FLAGS = {'FP SGD': '--fp', 'Analog SGD': '--analog', 'TT-v1': '--tt'}
PLOTTED = {'S4.1-plot-FCN': 'S4.1-mnist-FCN', 'S4.2-plot-CNN': 'S4.2-mnist-CNN'}     # plot script → its runs' script


def new_folder(cfg, argv, items, model=None):
    """results/analog/<script>/<date>/<time>/ with hyperparameters.txt (command line first) and plotFunctions.py."""
    folder = rundir.claim_time_dir(os.path.join(cfg.results_dir, 'analog', cfg.script))
    base = [('script', cfg.script), ('seed', cfg.seed), ('dry run', cfg.dry_run)]
    rundir.write_hyperparameters(folder, argv, base + list(items), prog=cfg.script + '.py')
    if model is not None:
        rundir.append_hyperparameters(folder, [str(model)])
    rundir.copy_plot_script(folder)
    return folder


def write_saturation(folder, rows):
    """saturation.csv: for each (labels, saturations) the max and mean |W|/bound and the fraction above 0.9, printed."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    table = pd.DataFrame([{**labels, 'max_saturation': s.max().item(), 'mean_saturation': s.mean().item(),
                           'fraction_above_0.9': (s > 0.9).double().mean().item()} for labels, s in rows])
    rundir.write_csv(os.path.join(folder, 'saturation.csv'), table)
    for (labels, _), r in zip(rows, table.to_dict('records')):
        say(f'{", ".join(f"{k} {v}" for k, v in labels.items())}: saturation |W|/bound max {r["max_saturation"]:.3f}, '
            f'mean {r["mean_saturation"]:.3f}, {100 * r["fraction_above_0.9"]:.1f} % above 0.9')


def saturation(W, b_min, b_max):
    """|w| / (the bound on w's side), element-wise; 1 where that bound is 0 (a device whose drawn bound was clipped
    to 0 holds w = 0 at its bound)."""
    bound = torch.where(W >= 0, b_max, -b_min)
    return torch.where(bound > 0, W.abs() / bound.clamp(min=analog.TINY), torch.ones_like(W))


def arrays(model):
    """{layer: {'W'} or {'A', 'C'} (Tiki-Taka), with 'b_min', 'b_max' for analog layers} on the CPU: what S6 plots."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (analog.AnalogLinear, analog.AnalogConv2d)):
            b_min, b_max = m.bounds()
            out[name] = {**{k: v.detach().cpu() for k, v in m.weights().items()}, 'b_min': b_min.detach().cpu(),
                         'b_max': b_max.detach().cpu()}
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            out[name] = {'W': m.weight.detach().cpu()}
    return out


# ---------------------------------------------------------------------------------------------------------------
# S4.1-plot / S4.2-plot: test accuracy averaged over repeats

FINAL_EPOCHS = 5
METRICS_COLUMNS = ('epoch', 'setting', 'tau', 'test_acc')      # what the summaries and the S6 lookup read


def read_metrics(path, fix):
    """The metrics.csv of an S4 run, checked: readable, at least one row, the METRICS_COLUMNS present and test_acc
    numeric. Anything else is a UsageError naming the file and `fix`, raised before a result folder is claimed."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:   # EmptyDataError: a ValueError
        raise UsageError(f'{path}: not a readable CSV ({type(e).__name__}: {str(e).splitlines()[0][:120]}); {fix}')
    missing = [c for c in METRICS_COLUMNS if c not in frame.columns]
    if missing:
        raise UsageError(f'{path}: not the metrics.csv of an S4 run (no {", ".join(missing)} column; it has '
                         f'{", ".join(map(str, frame.columns)) or "none"}); {fix}')
    if frame.empty or not pd.api.types.is_numeric_dtype(frame['test_acc']):
        raise UsageError(f'{path}: {"no epoch in it" if frame.empty else "test_acc is not numeric"}; {fix}')
    return frame


def synthetic_runs(seed):
    """Dry run without S4 runs: two made-up 6-epoch runs per setting (said on stdout)."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    g = torch.Generator().manual_seed(seed)
    frames = []
    for setting, tau, top in (('FP SGD', None, 97.5), ('Analog SGD', 0.6, 95.0), ('TT-v1', 0.6, 97.0)):
        for _ in range(2):
            acc = top - 10 * torch.exp(-torch.arange(6.0)) + 0.1 * torch.randn(6, generator=g)
            frames.append(pd.DataFrame({'epoch': range(1, 7), 'setting': setting, 'tau': tau, 'test_acc': acc}))
    say('dry run: no S4 runs found; summarising synthetic accuracy curves')
    return frames


def summarise(frames):
    """Per (setting, τ): the mean and std across repeats of test accuracy per epoch (runs cut to the shortest), and
    the final accuracy = mean over the last 5 epochs of the mean curve ± mean over them of the std across repeats."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    curves, finals = [], []
    groups = {}
    for f in frames:
        tau = f['tau'].iloc[0]
        groups.setdefault((f['setting'].iloc[0], None if pd.isna(tau) else float(tau)), []).append(f)
    for (setting, tau), fs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        n = min(len(f) for f in fs)
        acc = torch.from_numpy(np.stack([f['test_acc'].to_numpy(dtype=np.float64)[:n] for f in fs]))
        mean, std = acc.mean(0), (acc.std(0) if len(fs) > 1 else torch.zeros(n, dtype=torch.float64))
        curves.append(pd.DataFrame({'setting': setting, 'tau': tau, 'epoch': range(1, n + 1), 'mean': mean.numpy(),
                                    'std': std.numpy(), 'repeats': len(fs)}))
        k = min(FINAL_EPOCHS, n)
        finals.append(dict(setting=setting, tau=tau, final_acc=mean[-k:].mean().item(),
                           final_std=std[-k:].mean().item(), repeats=len(fs), epochs=n))
    return pd.concat(curves), pd.DataFrame(finals)


def plot_runs(cfg, argv):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    fix = f'move it out of the --runs folder, or give --runs a folder holding only {PLOTTED[cfg.script]}.py runs'
    frames = [read_metrics(p, fix) for p in cfg.sources] or synthetic_runs(cfg.seed)
    folder = trainer.open_run(lambda: new_folder(cfg, argv, [('runs', len(frames)), ('metrics files', cfg.sources)]))
    curves, finals = summarise(frames)
    rundir.write_csv(os.path.join(folder, 'curves.csv'), curves)
    rundir.write_csv(os.path.join(folder, 'final_accuracy.csv'), finals)
    for r in finals.itertuples(index=False):
        tau = '' if pd.isna(r.tau) else f' τ={r.tau:g}'
        say(f'{r.setting}{tau}: final accuracy {r.final_acc:.2f} ± {r.final_std:.2f} % (mean of the last '
            f'{min(FINAL_EPOCHS, r.epochs)} epochs, {r.repeats} run(s))')
    rundir.plot_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# S6: weight and saturation distributions

HIST_BINS, HIST_RANGE = 400, (-1.0, 1.0)


def distribution_arrays(cfg, setting, path):
    """(weights, saturations or None) of a checkpoint, every layer flattened: FP SGD and Analog SGD their visible
    weights W, TT-v1 its slow array C; saturation |w|/bound of the analog ones. No checkpoint (dry run): a freshly
    converted FCN."""
    if path is None:
        rpu = analog.rpu_config(setting, cfg.tau, 'S4')
        layers = arrays(analog.convert(wu_nets.FCN(), rpu))
    else:
        layers = saved_arrays(path, setting)
    key = 'C' if setting == 'TT-v1' else 'W'
    w = torch.cat([a[key].flatten() for a in layers.values()])
    if not all('b_max' in a for a in layers.values()):
        return w, None
    sat = torch.cat([saturation(a[key], a['b_min'], a['b_max']).flatten() for a in layers.values()])
    return w, sat


def saved_arrays(path, setting):
    """The `arrays` of a model.pt (see arrays()) given for `setting`, checked before a result folder is claimed: a
    dict of layers, each holding a tensor W (C for TT-v1) and, for analog layers, bounds of the same shape."""
    flag, what = S6_FLAGS[setting], 'a model.pt written with --save-checkpoint'
    ck = checkpoints.load(path, ('arrays',), what, flag)
    layers, key = ck['arrays'], 'C' if setting == 'TT-v1' else 'W'
    fix = f'give {flag} the model.pt of a --SETTING="{setting}" run made with --save-checkpoint'
    if not isinstance(layers, dict) or not layers or not all(isinstance(a, dict) for a in layers.values()):
        raise UsageError(f'{path}: its arrays are not a dict of layers (not {what}); {fix}')
    for name, a in layers.items():
        if not isinstance(a.get(key), torch.Tensor):
            saved = ck.get('setting')
            other = f' (saved by a --SETTING="{saved}" run)' if isinstance(saved, str) and saved != setting else ''
            raise UsageError(f'{path}: layer {name} has no {key} array{other}; {fix}')
        if any(not isinstance(a.get(b, a[key]), torch.Tensor) or a.get(b, a[key]).shape != a[key].shape
               for b in ('b_min', 'b_max')):
            raise UsageError(f'{path}: layer {name}: its bounds do not match its {key} array; {fix}')
    return layers


def histogram(values, setting, lo, hi):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    counts = torch.histc(values.double(), HIST_BINS, lo, hi)
    edges = torch.linspace(lo, hi, HIST_BINS + 1)
    return pd.DataFrame({'setting': setting, 'left': edges[:-1].numpy(), 'right': edges[1:].numpy(),
                         'count': counts.numpy()})


def distribution(cfg, argv):
    """weight_hist.csv, saturation_hist.csv (setting, left, right, count), saturation.csv (mean, max, fraction above
    0.9 per setting) and the figure."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    got = {s: distribution_arrays(cfg, s, p) for s, p in cfg.checkpoints.items()}
    folder = trainer.open_run(lambda: new_folder(cfg, argv, [('tau', cfg.tau), ('checkpoints', cfg.checkpoints),
                                                             ('bins', HIST_BINS)]))
    weights = pd.concat([histogram(w, s, *HIST_RANGE) for s, (w, _) in got.items()])
    sats = [(s, v) for s, (_, v) in got.items() if v is not None]
    rundir.write_csv(os.path.join(folder, 'weight_hist.csv'), weights)
    rundir.write_csv(os.path.join(folder, 'saturation_hist.csv'), pd.concat([histogram(v, s, 0.0, 1.0)
                                                                              for s, v in sats]))
    write_saturation(folder, [({'setting': s}, v) for s, v in sats])
    rundir.plot_folder(folder)
    return folder
