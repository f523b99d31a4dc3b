"""Figures of a result folder. A copy sits in every run folder: `python plotFunctions.py` inside it redraws every
figure of that run as PNG (headless), and also shows them when a display exists.

Reads what the run wrote: metrics.csv (training curves), gdu.pt / gdu_laborieux.pt + gdu_stats.csv (GDU traces),
neural_activity.pt, receipe_summary.csv; EPLCANet's dictionary.pt, dictlearn.csv, accuracy_vs_eps.csv, image_print.npz,
corruptions.csv; in a binary-EP date folder, the S-*/results.csv of every run; Wu et al. 2024's folders (told apart by
the script named on the first line of their hyperparameters.txt): final_loss.csv + curves.csv (S1-S3), metrics.csv
(S4, A12), curves.csv + final_accuracy.csv (S4 plot scripts), weight_hist.csv + saturation_hist.csv (S6).

`python plotFunctions.py --compare FOLDER [FOLDER …] [--out PNG]` overlays the per-epoch curves of several runs
(metrics.csv, binary EP's results.csv; e.g. EP vs BPTT, Analog SGD vs TT-v1, two β): one panel per metric they
share, each run labelled by its folder and the settings in which the runs differ.
Depends on matplotlib, pandas, numpy and torch only, so that the copy works outside the suite.
"""
import math
import os
import re
import sys

import matplotlib

if __name__ == '__main__' and (os.environ.get('DISPLAY') or sys.platform in ('darwin', 'win32')):
    SHOW = True
else:
    SHOW = False
    matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Labels in the paper's notation (layers counted from the output)

def param_labels(names, toymodel=False):
    """'w.0.weight' → 'W_01', …, the input weights → 'W_{L-1,x}'; biases → 'b_i'; conv/fc/toy names kept readable."""
    nw = len([n for n in names if re.fullmatch(r'w\.\d+\.weight', n)])
    out = {}
    for n in names:
        m = re.fullmatch(r'w\.(\d+)\.(weight|bias)', n)
        if m:
            i = int(m.group(1))
            if m.group(2) == 'bias':
                out[n] = f'b_{i}'
            else:
                out[n] = f'W_{{{i}{i + 1}}}' if i < nw - 1 else f'W_{{{i}x}}'
            continue
        m = re.fullmatch(r'(W\w+)\.(weight|bias)', n)
        if m:
            out[n] = f'{m.group(1)[0]}_{{{m.group(1)[1:]}}}' + (' bias' if m.group(2) == 'bias' else '')
            continue
        out[n] = n.replace('.weight', '').replace('.bias', ' bias').replace('.', '_')
    return out


def _save(fig, folder, name):
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    return path


# ---------------------------------------------------------------------------------------------------------------
# Training curves

def plot_results(folder):
    """Train/test error (%) vs epoch; one panel per method (EP and BPTT side by side for --benchmark)."""
    df = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    methods = list(dict.fromkeys(df['method']))
    fig, axes = plt.subplots(1, len(methods), figsize=(6 * len(methods), 4.5), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        d = df[df['method'] == method]
        ax.plot(d['epoch'], d['train_error'], 'o-', label='train error')
        ax.plot(d['epoch'], d['test_error'], 's--', label='test error')
        ax.set_title(f'{method} (last test error {d["test_error"].iloc[-1]:.2f} %, {d["seconds"].iloc[-1]:.0f} s)')
        ax.set_xlabel('epoch')
        ax.set_ylabel('error (%)')
        ax.grid(alpha=0.3)
        ax.legend()
    return [_save(fig, folder, 'error_curves.png')]


# ---------------------------------------------------------------------------------------------------------------
# GDU traces (solid = BPTT, dashed = EP)

def _units(n_units, k, gen, first=False):
    if first:
        return list(range(min(k, n_units)))
    return torch.randperm(n_units, generator=gen)[:k].tolist()


# gdu.pt holds, unless --save-all-traces, the traces of a sampled subset of units per layer and per parameter tensor:
# tr['nS'][i], tr['dS'][i] of shape (K, m) and tr['nT'|'dT'|'NT'|'DT'][k] of shape (K, m), m ≤ 50; tr['units'] holds
# their indices into the flattened full traces ({'nS': [LongTensor per layer], 'nT': {k: LongTensor}}; dS shares nS's,
# dT/NT/DT share nT's) and tr['shapes'] the full shapes (K, *layer) / (K, *param), from which an index unravels into a
# unit (channel, row, column for conv layers) or a weight's (row, column, …). The subset contains the units drawn
# below, so the figures are unchanged.
S_CURVES, T_CURVES = 5, 10


def units_S(sizes, n_curves=S_CURVES):
    """The flattened unit indices plot_S draws for layers of `sizes` units: 0…k−1 of the output layer,
    then a seeded random draw per layer."""
    gen = torch.Generator().manual_seed(0)
    return [_units(n, n_curves, gen, first=(i == 0)) for i, n in enumerate(sizes)]


def units_T(sizes, n_curves=T_CURVES):
    """{weight name: flattened indices plot_T draws} for {parameter name: number of entries} (biases not drawn)."""
    gen = torch.Generator().manual_seed(1)
    return {k: _units(n, n_curves, gen) for k, n in sizes.items() if k.endswith('weight')}


def trace_sizes(tr):
    """Number of units of every full trace, ([per layer], {per parameter}), sampled or not."""
    if 'shapes' in tr:
        return ([math.prod(s[1:]) for s in tr['shapes']['nS']],
                {k: math.prod(s[1:]) for k, s in tr['shapes']['nT'].items()})
    return [v[0].numel() for v in tr['nS']], {k: v[0].numel() for k, v in tr['nT'].items()}


def _columns(tr, kind, key, units):
    """Columns of the stored traces holding the given unit indices (the same indices when nothing was sampled)."""
    if 'units' not in tr:
        return units
    pos = {u: c for c, u in enumerate(tr['units'][kind][key].tolist())}
    return [pos[u] for u in units]


def _trace_pair(ax, n, d, columns):
    """BPTT (solid) and EP (dashed) traces of the chosen columns, one colour per unit."""
    n, d = n.flatten(1), d.flatten(1)
    t = range(n.shape[0])
    for c, j in enumerate(columns):
        ax.plot(t, n[:, j], '-', color=f'C{c % 10}')
        ax.plot(t, d[:, j], '--', color=f'C{c % 10}')


def plot_S(tr, folder, n_curves=S_CURVES):
    """Neural traces per layer: solid ∇BPTT_s(t) = ∂L/∂s_{T−t}, dashed −ΔEP_s(β, t); output layer shows units 0…k."""
    chosen = units_S(trace_sizes(tr)[0], n_curves)
    n_layers = len(tr['nS'])
    fig, axes = plt.subplots(1, n_layers, figsize=(4.5 * n_layers, 4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        _trace_pair(ax, tr['nS'][i], tr['dS'][i], _columns(tr, 'nS', i, chosen[i]))
        ax.set_title(f'$s^{{{i}}}$' + (' (output)' if i == 0 else ''))
        ax.set_xlabel('t (steps back from T / nudged steps)')
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('solid: BPTT, dashed: EP')
    return [_save(fig, folder, 'gdu_neurons.png')]


def plot_T(tr, folder, n_curves=T_CURVES):
    """Synaptic traces per weight tensor (instantaneous): solid ∇BPTT_θ(t), dashed −ΔEP_θ(β, t)."""
    chosen = units_T(trace_sizes(tr)[1], n_curves)
    labels = tr.get('labels', {})
    keys = [k for k in tr['nT'] if k.endswith('weight')]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        _trace_pair(ax, tr['nT'][k], tr['dT'][k], _columns(tr, 'nT', k, chosen[k]))
        ax.set_title(f'${labels.get(k, k)}$' if '_' in labels.get(k, '') and ' ' not in labels.get(k, '')
                     else labels.get(k, k))
        ax.set_xlabel('t')
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('solid: BPTT, dashed: EP')
    return [_save(fig, folder, 'gdu_synapses.png')]


def plot_Hist(folder):
    """Relative RMSE between the BPTT and EP traces, mean ± std over units, per layer (neurons and weights)."""
    df = pd.read_csv(os.path.join(folder, 'gdu_stats.csv'))
    df = df[(df['kind'] == 'neurons') | df['key'].str.endswith('weight')]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(df)), 4))
    colors = ['C0' if k == 'neurons' else 'C1' for k in df['kind']]
    ax.bar(range(len(df)), df['rmse_mean'], yerr=df['rmse_std'], color=colors, capsize=3)
    ax.set_xticks(range(len(df)))
    ax.set_xticklabels(df['label'], rotation=30)
    ax.set_ylabel('RMSE(BPTT, EP)')
    ax.set_title('GDU property: relative RMSE per layer (blue: neurons, orange: synapses)')
    ax.grid(axis='y', alpha=0.3)
    return [_save(fig, folder, 'gdu_rmse.png')]


def plot_acc(folder, name='train-test_acc.png', pdf=False):
    """Laborieux et al. 2021 (and Wu et al. 2024's S4 / A12 runs, also as PDF): train and test accuracy vs epoch."""
    df = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    fig = _curves(df, 'epoch', (('train_acc', 'o-', 'train (running, before each update)'), ('test_acc', 's--', 'test')),
                  'epoch', f'best test accuracy {df["test_acc"].max():.2f} %')
    return [_save(fig, folder, name)] + ([_save(fig, folder, name[:-4] + '.pdf')] if pdf else [])


def _curves(df, x, series, xlabel, title, figsize=(8, 4.5)):
    """Accuracy curves against column `x`: series = ((column, style, label), ...)."""
    fig, ax = plt.subplots(figsize=figsize)
    for col, style, label in series:
        ax.plot(df[x], df[col], style, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('accuracy (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _hist_args(v, bins=50):
    """(values, {bins, range}) for ax.hist: in float64 and, for a (nearly) constant layer such as one saturated at 1
    with a value one float32 step off, a range widened by ±0.5, where numpy cannot cut 50 bins (ValueError)."""
    x = v.double().flatten().numpy()
    lo, hi = float(x.min()), float(x.max())
    pad = 0.5 if hi - lo < 1e-9 * max(1.0, abs(lo), abs(hi)) * bins else 0.0
    return x, dict(bins=bins, range=(lo - pad, hi + pad))


def plot_neural_activity(folder):
    """Histograms (50 bins) of every neuron layer at the free equilibrium of one mini-batch."""
    acts = torch.load(os.path.join(folder, 'neural_activity.pt'))
    fig, axes = plt.subplots(1, len(acts), figsize=(3.5 * len(acts), 3), squeeze=False)
    for ax, (name, v) in zip(axes[0], acts.items()):
        x, kw = _hist_args(v)
        ax.hist(x, **kw)
        ax.set_title(name)
    return [_save(fig, folder, 'neural_activity.png')]


def plot_gdu_keys(folder):
    """Laborieux et al. 2021 theorem check: for every key, 3 random components of the integrated (cumulative)
    updates; BPTT solid, EP one-sided right dotted, and with the third phase the left one dotted and their mean
    (symmetric) dashed. With the third phase also bars.png: per weight layer, the mean over components of
    2|sym − bptt| / (|right − bptt| + |left − bptt|) at the last step (< 1: the symmetric estimate is closer)."""
    tr = torch.load(os.path.join(folder, 'gdu_laborieux.pt'))
    right, left = tr['right'], tr.get('left')
    gen = torch.Generator().manual_seed(0)
    paths = []
    series = {f'neurons_{i}': i for i in range(len(right['nS']))}
    series.update({k: k for k in right['nT']})
    for key, src in series.items():
        if isinstance(src, int):
            b, r = right['nS'][src].cumsum(0), right['dS'][src].cumsum(0)
            lft = left['dS'][src].cumsum(0) if left else None
        else:
            b, r = right['NT'][src], right['DT'][src]
            lft = left['DT'][src] if left else None
        b, r = b.flatten(1), r.flatten(1)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        t = range(b.shape[0])
        for c, j in enumerate(torch.randperm(b.shape[1], generator=gen)[:3].tolist()):
            col = f'C{c}'
            ax.plot(t, b[:, j], '-', color=col, label='BPTT' if c == 0 else None)
            ax.plot(t, r[:, j], ':', color=col, label='EP one-sided right' if c == 0 else None)
            if lft is not None:
                lf = lft.flatten(1)
                ax.plot(t, lf[:, j], ':', color=col, alpha=0.6, label='EP one-sided left' if c == 0 else None)
                ax.plot(t, (r[:, j] + lf[:, j]) / 2, '--', color=col, label='EP symmetric' if c == 0 else None)
        ax.set_xlabel('time step t')
        ax.set_ylabel('gradient estimate')
        ax.set_title(key)
        ax.legend()
        paths.append(_save(fig, folder, key.replace('.', '_') + '.png'))
    if left is not None:
        keys = [k for k in right['NT'] if k.endswith('weight')]
        ratios = []
        for k in keys:
            b, r, lf = right['NT'][k][-1], right['DT'][k][-1], left['DT'][k][-1]
            den = (r - b).abs() + (lf - b).abs()
            q = torch.where(den > 0, 2 * ((r + lf) / 2 - b).abs() / den.clamp_min(1e-30), torch.ones_like(den))
            ratios.append(q.mean().item())
        fig, ax = plt.subplots(figsize=(max(5, len(keys)), 4))
        ax.bar(range(1, len(keys) + 1), ratios)
        ax.set_ylim(0, 1)
        ax.set_xlabel('layer')
        ax.set_ylabel('|sym − BPTT| / mean |one-sided − BPTT|')
        paths.append(_save(fig, folder, 'bars.png'))
        pd.DataFrame({'key': keys, 'ratio': ratios}).to_csv(os.path.join(folder, 'bars.csv'), index=False)
    return paths


def plot_receipe(folder):
    df = pd.read_csv(os.path.join(folder, 'receipe_summary.csv'))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(df)), 4))
    ax.bar(range(len(df)), df['total_mean'], yerr=df['total_std'], capsize=3, label='same sign (incl. both zero)')
    ax.bar(range(len(df)), df['sign_mean'], alpha=0.6, label='same sign, non-zero')
    ax.set_xticks(range(len(df)))
    ax.set_xticklabels(df['key'], rotation=30)
    ax.set_ylabel('% of synapses')
    ax.set_ylim(0, 100)
    ax.legend()
    return [_save(fig, folder, 'receipe.png')]


def binary_runs(folder):
    """{'S-k': results dataframe} for the binary-EP run folders inside a date folder."""
    runs = {}
    for name in sorted(os.listdir(folder), key=lambda n: (len(n), n)):
        path = os.path.join(folder, name, 'results.csv')
        if re.fullmatch(r'S-\d+', name) and os.path.isfile(path):
            runs[name] = pd.read_csv(path)
    return runs


def _mean_std(ax, frames, col, color, label):
    n = min(len(f) for f in frames)
    v = torch.from_numpy(np.array([f[col].to_numpy()[:n] for f in frames], dtype=np.float64))
    m, s = v.mean(0), (v.std(0) if len(frames) > 1 else torch.zeros(n))
    ep = range(1, n + 1)
    ax.plot(ep, m, color=color, label=label)
    ax.fill_between(ep, m - s, m + s, color=color, alpha=0.25)


def plot_binary(folder):
    """Laydevant et al. 2021, run in a date folder: the original four figures (errors and losses per run, then mean ±
    std across runs) and what it lacked: log fraction of flipped weights and α, per layer and epoch."""
    runs = binary_runs(folder)
    paths = []
    for kind, cols in (('errors', ('Train_Error', 'Test_Error')), ('losses', ('Train_Loss', 'Test_Loss'))):
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, df in runs.items():
            ep = range(1, len(df) + 1)
            for c, col in enumerate(cols):
                if kind == 'errors':
                    ax.plot(ep, df['Ave_' + col], '-', color=f'C{c}', label=f'{name} ave {col}')
                    ax.plot(ep, df['Single_' + col], '--', color=f'C{c}', label=f'{name} single {col}')
                else:
                    ax.plot(ep, df[col], '-', color=f'C{c}', label=f'{name} {col}')
        ax.set_xlabel('Epochs')
        ax.set_ylabel('Error (%)' if kind == 'errors' else 'Loss')
        ax.legend(fontsize=7)
        paths.append(_save(fig, folder, f'{kind}.png'))
        fig, ax = plt.subplots(figsize=(8, 5))
        for c, col in enumerate(cols):
            _mean_std(ax, list(runs.values()), ('Ave_' + col) if kind == 'errors' else col, f'C{c}', col)
        ax.set_xlabel('Epochs')
        ax.set_ylabel('Error (%)' if kind == 'errors' else 'Loss')
        ax.set_title(f'mean ± std over {len(runs)} run(s)')
        ax.legend()
        paths.append(_save(fig, folder, f'{kind}_mean_std.png'))
    for prefix, fname, ylabel in (('Nb_Change_Weights_', 'flips.png', 'ln(fraction of weights flipped)'),
                                  ('Alpha_', 'alpha.png', 'α (mean per layer)')):
        fig, ax = plt.subplots(figsize=(8, 5))
        for r, (name, df) in enumerate(runs.items()):
            for c, col in enumerate(k for k in df.columns if k.startswith(prefix)):
                ax.plot(range(1, len(df) + 1), df[col], ['-', '--', ':', '-.'][r % 4], color=f'C{c}',
                        label=f'{name} layer {col[len(prefix):]}')
        ax.set_xlabel('Epochs')
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        paths.append(_save(fig, folder, fname))
    return paths


# ---------------------------------------------------------------------------------------------------------------
# EPLCANet: LCA metrics, dictionary, robustness

def _train_test(df, col, ax, ylabel):
    for split, style in (('train', 'o-'), ('test', 's--')):
        if f'{split}_{col}' in df:
            ax.plot(df['epoch'], df[f'{split}_{col}'], style, label=split)
    ax.set_xlabel('epoch')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_lca_metrics(folder):
    """recon_error.png (mean squared error, and the signed mean of x̂ − D ∗ a the original logged) and
    sparsity.png (fraction of non-zero LCA codes), train vs test, per epoch."""
    df = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _train_test(df, 'recon_mse', axes[0], 'reconstruction error (MSE)')
    _train_test(df, 'recon_mean', axes[1], 'mean signed residual')
    paths = [_save(fig, folder, 'recon_error.png')]
    fig, ax = plt.subplots(figsize=(6, 4))
    _train_test(df, 'sparsity', ax, 'fraction of active LCA units')
    return paths + [_save(fig, folder, 'sparsity.png')]


def feature_grid(weights, nrow=None):
    """The dictionary as one image grid (features laid out in rows; each feature scaled to [0, 1])."""
    F_, C, k, _ = weights.shape
    nrow = nrow or int(math.ceil(math.sqrt(F_)))
    ncol = int(math.ceil(F_ / nrow))
    w = weights.detach().cpu()
    lo = w.flatten(1).min(1)[0].view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1)[0].view(-1, 1, 1, 1)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    grid = torch.ones(C, ncol * (k + 1) + 1, nrow * (k + 1) + 1)
    for f in range(F_):
        r, c = divmod(f, nrow)
        grid[:, 1 + r * (k + 1): 1 + r * (k + 1) + k, 1 + c * (k + 1): 1 + c * (k + 1) + k] = w[f]
    return grid


def plot_dictionary(folder):
    """The LCA dictionary as an image grid (lca_weights.png)."""
    w = torch.load(os.path.join(folder, 'dictionary.pt'), weights_only=False)['weights']
    grid = feature_grid(w)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow((grid[0] if grid.shape[0] == 1 else grid.permute(1, 2, 0)).numpy(), cmap='gray')
    ax.axis('off')
    ax.set_title(f'{w.shape[0]} features {w.shape[-1]}×{w.shape[-1]}')
    return [_save(fig, folder, 'lca_weights.png')]


def plot_dictlearn(folder):
    df = pd.read_csv(os.path.join(folder, 'dictlearn.csv'))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, col in zip(axes, ('recon_mse', 'sparsity', 'energy')):
        ax.plot(df['epoch'], df[col], 'o-')
        ax.set_xlabel('epoch')
        ax.set_title(col)
        ax.grid(alpha=0.3)
    return [_save(fig, folder, 'dictlearn.png')]


def plot_attack(folder):
    """Clean and adversarial accuracy vs ε (log scale)."""
    df = pd.read_csv(os.path.join(folder, 'accuracy_vs_eps.csv'))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(df['eps'], df['adv_acc'], 'o-', label='adversarial')
    ax.semilogx(df['eps'], df['clean_acc'], 'k--', label='clean')
    ax.set_xlabel(f'ε (L{df["norm"].iloc[0]})')
    ax.set_ylabel('accuracy (%)')
    ax.grid(alpha=0.3)
    ax.legend()
    return [_save(fig, folder, 'accuracy_vs_eps.png')]


def plot_image_print(folder):
    d = np.load(os.path.join(folder, 'image_print.npz'))
    imgs = d['images']
    fig, axes = plt.subplots(1, len(imgs), figsize=(2.2 * len(imgs), 2.6))
    for ax, img, e, p in zip(axes, imgs, d['eps'], d['predictions']):
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap='gray', vmin=0, vmax=1)
        ax.set_title(f'ε {e:g}: predicted {p}')
        ax.axis('off')
    fig.suptitle(f'label {int(d["label"])}')
    return [_save(fig, folder, 'image_print.png')]


def plot_corruptions(folder):
    df = pd.read_csv(os.path.join(folder, 'corruptions.csv'))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, g in df.groupby('corruption'):
        ax.plot(g['severity'], g['accuracy'], alpha=0.4)
    mean = df.groupby('severity')['accuracy'].mean()
    ax.plot(mean.index, mean.values, 'ko-', lw=2, label='mean over corruptions')
    ax.set_xlabel('severity')
    ax.set_ylabel('accuracy (%)')
    ax.grid(alpha=0.3)
    ax.legend()
    return [_save(fig, folder, 'corruptions.png')]


# ---------------------------------------------------------------------------------------------------------------
# Nest & Ernoult 2024 (ff-EBMs): accuracy and wall-clock curves; GDD bars and transients

def plot_ffebm(folder):
    """accuracy.png: top-1 / top-5 train and test vs epoch; wall_clock.png: test top-1 vs cumulative seconds."""
    df = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    series = [(col, style, col.replace('_', ' ')) for col, style in
              (('train_top1', 'o-'), ('test_top1', 's-'), ('train_top5', 'o:'), ('test_top5', 's:'))]
    fig = _curves(df, 'epoch', series, 'epoch', f'best test top-1 {df["test_top1"].max():.2f} %')
    paths = [_save(fig, folder, 'accuracy.png')]
    fig = _curves(df, 'seconds', (('test_top1', 's-', 'test top-1'), ('train_top1', 'o-', 'train top-1')),
                  'wall-clock time (s, cumulative)', f'{df["epoch_seconds"].mean():.1f} s per epoch', figsize=(7, 4.5))
    return paths + [_save(fig, folder, 'wall_clock.png')]


def plot_gdd(folder):
    """bars.png: per-layer cos∠(ĝ^EP, ĝ^ID) at t = T2 (error bars over batches × seeds when present);
    curves.png: one column per block, one row per weight layer of the block, ID thick coloured, EP dashed black,
    against the backward time t (offset per block)."""
    bars = pd.read_csv(os.path.join(folder, 'bars.csv'))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(bars)), 4))
    ax.bar(bars['layer'], bars['cosine'], yerr=bars['cosine_std'] if (bars['n'] > 1).any() else None,
           color=plt.cm.plasma(np.linspace(0, 0.9, len(bars))), capsize=3)
    ax.set_xticks(bars['layer'])
    ax.set_xticklabels([f'Layer {i}' for i in bars['layer']], rotation=60)
    ax.set_ylabel(r'cos$\angle(\hat g^{EP}, \hat g^{ID})$')
    ax.set_ylim(min(0.0, bars['cosine'].min() - 0.05), 1.02)
    ax.grid(alpha=0.3, axis='y')
    paths = [_save(fig, folder, 'bars.png')]
    path = os.path.join(folder, 'curves.csv')
    if not os.path.exists(path) or os.path.getsize(path) < 2:
        return paths
    cur = pd.read_csv(path)
    blocks = sorted(cur['block'].unique())
    rows = max(len(cur[cur['block'] == b]['layer'].unique()) for b in blocks)
    fig, axes = plt.subplots(rows, len(blocks), figsize=(2.6 * len(blocks), 2.0 * rows), squeeze=False)
    colors = plt.cm.plasma(np.linspace(0, 0.9, cur['layer'].max()))
    offset = cur['t'].max()                           # T2: block j's backward time starts at j·T2
    for ax in axes.flat:
        ax.axis('off')
    for j, b in enumerate(blocks):
        for i, layer in enumerate(sorted(cur[cur['block'] == b]['layer'].unique())):
            ax = axes[i][j]
            ax.axis('on')
            for _, g in cur[cur['layer'] == layer].groupby('element'):
                ax.plot(g['t'] + offset * j, g['ID'], color=colors[layer - 1], lw=2.5)
                ax.plot(g['t'] + offset * j, g['EP'], 'k--', lw=0.8)
            ax.set_title(f'layer {layer}', fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return paths + [_save(fig, folder, 'curves.png')]


# ---------------------------------------------------------------------------------------------------------------
# Wu et al. 2024 (analog in-memory training): toy least squares (S1-S3), MNIST accuracy (S4), weight histograms (S6)

WU_LABELS = {'digital': 'digital SGD', 'analog': 'Analog SGD', 'tt': 'Tiki-Taka (TT-v1)',
             'closed_form': 'Analog SGD, closed form (A-ALD)', 'simulation': 'Analog SGD, simulated devices'}
WU_STYLES = {'digital': '-', 'analog': '--', 'tt': ':', 'closed_form': '--', 'simulation': '-'}


def _save_both(fig, folder, stem):
    return [_save(fig, folder, stem + '.png'), _save(fig, folder, stem + '.pdf')]


def ema(values, alpha):
    """s_t = α s_{t−1} + (1 − α) v_t, s_1 = v_1: the smoothing of the plotted curves."""
    return pd.Series(np.asarray(values, dtype=np.float64)).ewm(alpha=1 - alpha, adjust=False).mean().to_numpy()


def plot_wu_sweep(folder, key, stem, alpha, xlabel, once=()):
    """S1 and S3: left, the final loss (mean of the last 20 logged values) against the swept value per curve; right,
    the loss curves (EMA α) of every value (colour) and curve (line style). Curves in `once` are the same for every
    value and drawn once."""
    final = pd.read_csv(os.path.join(folder, 'final_loss.csv'))
    curves = pd.read_csv(os.path.join(folder, 'curves.csv'))
    values = list(dict.fromkeys(final[key]))
    numeric = pd.api.types.is_numeric_dtype(final[key])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for curve, g in final.groupby('curve', sort=False):
        x = g[key] if numeric else [values.index(v) for v in g[key]]
        ax0.plot(x, g['final_loss'], 'o' + WU_STYLES[curve], label=WU_LABELS[curve])
    if numeric:
        ax0.set_xscale('log')
    else:
        ax0.set_xticks(range(len(values)))
        ax0.set_xticklabels(values, rotation=30, ha='right', fontsize=8)
    ax0.set_yscale('log')
    ax0.set_xlabel(xlabel)
    ax0.set_ylabel('learning error (mean of the last 20 losses)')
    ax0.grid(alpha=0.3, which='both')
    ax0.legend(fontsize=8)
    drawn = set()
    for i, v in enumerate(values):
        for curve, g in curves[curves[key] == v].groupby('curve', sort=False):
            if curve in drawn:
                continue
            drawn.update({curve} & set(once))
            name = WU_LABELS[curve] + ('' if curve in once else f', {xlabel} = {v}')
            ax1.plot(g['iteration'], ema(g['loss'], alpha), WU_STYLES[curve], color='k' if curve in once else f'C{i}',
                     label=name)
    ax1.set_yscale('log')
    ax1.set_xlabel('iteration (gradient computations)')
    ax1.set_ylabel(f'loss / input size (EMA {alpha})')
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return _save_both(fig, folder, stem)


def plot_wu_verification(folder, alpha=0.8):
    """S2 (Fig. 3): one panel per τ with the digital SGD, closed-form and simulated Analog SGD curves (EMA α)."""
    curves = pd.read_csv(os.path.join(folder, 'curves.csv'))
    taus = list(dict.fromkeys(curves['tau']))
    fig, axes = plt.subplots(1, len(taus), figsize=(4.2 * len(taus), 3.8), squeeze=False, sharey=True)
    for ax, tau in zip(axes[0], taus):
        for c, (curve, g) in enumerate(curves[curves['tau'] == tau].groupby('curve', sort=False)):
            ax.plot(g['iteration'], ema(g['loss'], alpha), WU_STYLES[curve], color=f'C{c}', label=WU_LABELS[curve])
        ax.set_yscale('log')
        ax.set_title(f'τ = {tau:g}')
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f'loss / input size (EMA {alpha})')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save_both(fig, folder, 'alg-verification-match')


def _setting_label(setting, tau):
    return setting if pd.isna(tau) else f'{setting}, τ = {tau:g}'


def plot_wu_accuracy(folder, stem, alpha=0.8, inset_epochs=3):
    """S4 plot scripts (Fig. 5): test accuracy (%) per epoch, mean over repeats (EMA α) ± std, per setting and τ;
    an inset zooms on the last epochs; the legend gives the final accuracy (mean of the last 5 epochs)."""
    curves = pd.read_csv(os.path.join(folder, 'curves.csv'))
    final = pd.read_csv(os.path.join(folder, 'final_accuracy.csv'))
    fig, ax = plt.subplots(figsize=(8, 5))
    inset = ax.inset_axes([0.45, 0.12, 0.5, 0.45])
    for i, r in enumerate(final.itertuples(index=False)):
        g = curves[(curves['setting'] == r.setting) & ((curves['tau'] == r.tau) | (curves['tau'].isna() &
                                                                                   pd.isna(r.tau)))]
        m = ema(g['mean'], alpha)
        for a in (ax, inset):
            a.plot(g['epoch'], m, color=f'C{i}', label=f'{_setting_label(r.setting, r.tau)}: {r.final_acc:.2f} ± '
                                                      f'{r.final_std:.2f} %')
            a.fill_between(g['epoch'], m - g['std'], m + g['std'], color=f'C{i}', alpha=0.2)
    last = curves['epoch'].max()
    zoom = curves[curves['epoch'] > last - inset_epochs]
    inset.set_xlim(max(last - inset_epochs + 1, 1) - 0.1, last + 0.1)
    inset.set_ylim(zoom['mean'].min() - zoom['std'].max() - 0.1, zoom['mean'].max() + zoom['std'].max() + 0.1)
    inset.tick_params(labelsize=7)
    ax.set_xlabel('epoch')
    ax.set_ylabel('test accuracy (%)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper left')
    return _save_both(fig, folder, stem)


def plot_wu_distribution(folder):
    """S6 (Fig. 7): histograms of the weights (top, per setting) and of the saturation |w|/bound (bottom, analog
    settings: Analog SGD's weights, TT-v1's array C)."""
    weights = pd.read_csv(os.path.join(folder, 'weight_hist.csv'))
    sats = pd.read_csv(os.path.join(folder, 'saturation_hist.csv'))
    settings = list(dict.fromkeys(weights['setting']))
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 6.5), squeeze=False)
    for j, s in enumerate(settings):
        for ax, table, xlabel in ((axes[0][j], weights, 'weight'), (axes[1][j], sats, 'saturation |w| / bound')):
            g = table[table['setting'] == s]
            if g.empty:
                ax.axis('off')
                continue
            ax.stairs(g['count'], np.append(g['left'].to_numpy(), g['right'].iloc[-1]), fill=True, color=f'C{j}')
            ax.set_title(s)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('count')
    axes[1][0].set_ylabel('count')
    fig.tight_layout()
    return _save_both(fig, folder, 'weight-distribution')


def _wu_sweep(key, stem, alpha, xlabel, once=()):
    return lambda folder: plot_wu_sweep(folder, key, stem, alpha, xlabel, once)


def _wu_run(folder):
    return plot_acc(folder, 'accuracy.png', pdf=True)


WU_FIGURES = {
    'S1-SGD-diff-lr': _wu_sweep('lr', 'dynamic_loss_vs_lr', 0.9, 'step size α'),
    'S2-dynamic-verification': plot_wu_verification,
    'S3.1-ablation-tau': _wu_sweep('tau', 'Analog_GD_diff-tau', 0.8, 'τ', once=('digital',)),
    'S3.2-ablation-sigma': _wu_sweep('sigma2', 'Analog_GD_diff-std', 0.8, 'σ²'),
    'S3.3-ablation-init': _wu_sweep('init', 'AGD-from-diff', 0.8, 'initial point'),
    'S4.1-mnist-FCN': _wu_run, 'S4.2-mnist-CNN': _wu_run, 'A12-resnet-finetune': _wu_run,
    'S4.1-plot-FCN': lambda folder: plot_wu_accuracy(folder, 'FCN-accuracy'),
    'S4.2-plot-CNN': lambda folder: plot_wu_accuracy(folder, 'CNN-accuracy'),
    'S6-plot-distribution': plot_wu_distribution,
}


def wu_script(folder):
    """The Wu et al. 2024 script that made the folder (from its command line), or None."""
    path = os.path.join(folder, 'hyperparameters.txt')
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        m = re.match(r'python (\S+)\.py', f.readline())
    return m.group(1) if m and m.group(1) in WU_FIGURES else None


def plot_folder(folder='.', show=False):
    """Draw every figure whose data the folder holds; returns the PNG (and PDF) paths. Under torchrun only rank 0
    draws (RANK, read from the environment: this copy runs outside the suite too)."""
    if os.environ.get('RANK', '0') != '0':
        return []
    paths = []
    script = wu_script(folder)
    if script:
        paths += WU_FIGURES[script](folder)
    if binary_runs(folder):
        paths += plot_binary(folder)
    if script is None and os.path.exists(os.path.join(folder, 'metrics.csv')):   # (a Wu run's: drawn above)
        cols = pd.read_csv(os.path.join(folder, 'metrics.csv'), nrows=1).columns
        if 'method' in cols:
            paths += plot_results(folder)
        elif 'test_top1' in cols:
            paths += plot_ffebm(folder)
        elif 'train_sparsity' in cols:
            paths += plot_acc(folder, 'accuracy.png') + plot_lca_metrics(folder)
        else:
            paths += plot_acc(folder)
    if os.path.exists(os.path.join(folder, 'bars.csv')):
        paths += plot_gdd(folder)
    if os.path.exists(os.path.join(folder, 'neural_activity.pt')):
        paths += plot_neural_activity(folder)
    if os.path.exists(os.path.join(folder, 'gdu_laborieux.pt')):
        paths += plot_gdu_keys(folder)
    if os.path.exists(os.path.join(folder, 'gdu.pt')):
        tr = torch.load(os.path.join(folder, 'gdu.pt'), weights_only=False)
        paths += plot_S(tr, folder) + plot_T(tr, folder)
    if os.path.exists(os.path.join(folder, 'gdu_stats.csv')):
        paths += plot_Hist(folder)
    if os.path.exists(os.path.join(folder, 'receipe_summary.csv')):
        paths += plot_receipe(folder)
    for name, draw in (('dictionary.pt', plot_dictionary), ('dictlearn.csv', plot_dictlearn),
                       ('accuracy_vs_eps.csv', plot_attack), ('image_print.npz', plot_image_print),
                       ('corruptions.csv', plot_corruptions)):
        if os.path.exists(os.path.join(folder, name)):
            paths += draw(folder)
    if show:
        plt.show()
    plt.close('all')
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Several runs in one figure: python plotFunctions.py --compare FOLDER [FOLDER …] [--out PNG]

METRICS_FILES = ('metrics.csv', 'results.csv')          # per-epoch metrics (results.csv: binary EP)
# settings that differ between runs without making them different runs
NOT_SETTINGS = {'--results-dir', '--data-root', '--threads', '--device', '--load-path', 'results_dir', 'data_root',
                'threads', 'device', 'world size'}


class CompareError(Exception):
    """A folder or a set of folders that --compare cannot draw: one line for the user (exit code 2)."""


def compare_runs(folder):
    """[(run folder, curve name, per-epoch table)] of a folder: its metrics.csv (one curve per method, e.g. EP and its
    BPTT twin) or results.csv, or the S-*/results.csv of a binary-EP date folder."""
    for name in METRICS_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            df = pd.read_csv(path)
            if 'method' in df:
                return [(folder, str(m), g) for m, g in df.groupby('method', sort=False)]
            return [(folder, '', df)]
    runs = binary_runs(folder) if os.path.isdir(folder) else {}
    if runs:
        return [(os.path.join(folder, name), '', df) for name, df in runs.items()]
    raise CompareError(f'{folder}: no {" or ".join(METRICS_FILES)} there (the per-epoch metrics of a training run); '
                       f'give run folders')


def shared_metrics(tables):
    """The numeric columns (but the epoch) of every table, less the settings: columns constant in every table that
    has several rows."""
    cols = [c for c in tables[0].columns if c != 'epoch'
            and all(c in t and pd.api.types.is_numeric_dtype(t[c]) and t[c].notna().any() for t in tables)]
    long = [t for t in tables if len(t) > 1]
    return [c for c in cols if not long or any(t[c].nunique(dropna=True) > 1 for t in long)]


def run_settings(folder):
    """({flag or override: value} of the command line, {key: value} of the '- key: value' lines) of a run's
    hyperparameter file (empty where there is none or it does not read)."""
    path = next((os.path.join(folder, n) for n in ('hyperparameters.txt', 'Hyperparameters.txt')
                 if os.path.isfile(os.path.join(folder, n))), None)
    flags, items = {}, {}
    if path is None:
        return flags, items
    import shlex
    with open(path, errors='replace') as f:
        lines = f.read().splitlines()
    try:
        words = shlex.split(lines[0])[2:] if lines and lines[0].startswith('python ') else []
    except ValueError:
        words = []
    key = None
    for w in words:
        name, eq, value = w.partition('=')
        if w.startswith('-') and not re.fullmatch(r'-[0-9.]+(e[-+]?\d+)?', w):      # a flag (not a negative value)
            flags[name] = value
            key = None if eq else name                  # --flag=value takes no more words
        elif re.fullmatch(r'[+~]?[A-Za-z_][\w.]*', name) and eq:                 # a Hydra override key=value
            flags[name] = value
            key = None
        elif key is not None:
            flags[key] = (flags[key] + ' ' + w).strip()
    for line in lines[1:]:
        m = re.match(r'- ([^:]+): (.*)', line)
        if m:
            items[m.group(1)] = m.group(2)
    return flags, items


def _differing(dicts):
    keys = list(dict.fromkeys(k for d in dicts for k in d if k not in NOT_SETTINGS))
    return [k for k in keys if len({d.get(k) for d in dicts}) > 1]


def short_names(folders):
    """The shortest path endings that tell the folders apart (the whole paths when none does)."""
    parts = [os.path.normpath(os.path.abspath(f)).split(os.sep) for f in folders]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = [os.path.join(*p[-k:]) for p in parts]
        if len(set(names)) == len(set(map(tuple, parts))):
            return names
    return list(folders)


def run_labels(folders, limit=90):
    """A legend label per run folder: its short name and the settings in which the runs differ (the command line's
    flags and overrides; the hyperparameter file's '- key: value' lines when the command lines do not differ)."""
    settings = [run_settings(f) for f in folders]
    flags, items = [s[0] for s in settings], [s[1] for s in settings]
    keys, source = _differing(flags), flags
    if not keys:
        keys, source = _differing(items), items
    labels = []
    for name, d in zip(short_names(folders), source):
        what = ', '.join(f'{k} {d[k]}' if k.startswith('-') else f'{k}={d[k]}' for k in keys if k in d)
        label = f'{name}: {what}' if what else name
        labels.append(label if len(label) <= limit else label[:limit - 1] + '…')
    return labels


def compare(folders, out='compare.png', show=False):
    """One panel per metric that the runs share (the per-epoch curves of every run of the folders), labelled by
    folder and the settings in which they differ; written to `out`. Returns its path."""
    runs = [r for f in folders for r in compare_runs(f)]
    metrics = shared_metrics([t for _, _, t in runs])
    if not metrics:
        raise CompareError(f'{" ".join(folders)}: no per-epoch metric is shared by these runs (compare runs of one '
                           f'paper, e.g. EP and BPTT, two β, Analog SGD and TT-v1)')
    run_folders = list(dict.fromkeys(f for f, _, _ in runs))
    labels = dict(zip(run_folders, run_labels(run_folders)))
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.axis('off')
    for ax, metric in zip(axes.flat, metrics):
        for i, (folder, curve, t) in enumerate(runs):
            x = t['epoch'] if 'epoch' in t else range(1, len(t) + 1)
            ax.plot(x, t[metric], 'o-', ms=3, color=f'C{i % 10}',
                    label=labels[folder] + (f' [{curve}]' if curve else ''))
        ax.set_title(metric)
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc='lower center', ncol=1, fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches='tight')
    if show:
        plt.show()
    plt.close(fig)
    return out


def main(argv):
    """No arguments: every figure of the folder this copy sits in (as it always did); --compare: several runs."""
    if not argv:
        for p in plot_folder('.', show=SHOW):
            print('wrote', p)
        return
    import argparse
    parser = argparse.ArgumentParser(prog='plotFunctions.py', description='Without arguments: redraw the figures of '
                                     'this folder. With --compare: overlay the per-epoch curves of several runs.')
    parser.add_argument('--compare', nargs='+', required=True, metavar='FOLDER',
                        help='run folders (metrics.csv, results.csv) or binary-EP date folders')
    parser.add_argument('--out', default='compare.png', help='the PNG to write (default compare.png)')
    args = parser.parse_args(argv)
    try:
        print('wrote', compare(args.compare, args.out, show=SHOW))
    except CompareError as e:
        print(f'plotFunctions.py: error: {e}', file=sys.stderr)
        raise SystemExit(2)


if __name__ == '__main__':
    main(sys.argv[1:])
