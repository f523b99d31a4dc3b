"""Figures of a result folder. A copy sits in every run folder: `python plotFunctions.py` inside it redraws every
figure of that run as PNG (headless), and also shows them when a display exists.

Reads what the run wrote: metrics.csv (training curves), gdu.pt + gdu_stats.csv (GDU traces), receipe_summary.csv.
Depends on matplotlib, pandas and torch only, so that the copy works outside the suite.
"""
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


def plot_S(tr, folder, n_curves=5):
    """Neural traces per layer: solid ∇BPTT_s(t) = ∂L/∂s_{T−t}, dashed −ΔEP_s(β, t); output layer shows units 0…k."""
    gen = torch.Generator().manual_seed(0)
    n_layers = len(tr['nS'])
    fig, axes = plt.subplots(1, n_layers, figsize=(4.5 * n_layers, 4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        n, d = tr['nS'][i].flatten(1), tr['dS'][i].flatten(1)
        t = range(n.shape[0])
        for c, j in enumerate(_units(n.shape[1], n_curves, gen, first=(i == 0))):
            col = f'C{c}'
            ax.plot(t, n[:, j], '-', color=col)
            ax.plot(t, d[:, j], '--', color=col)
        ax.set_title(f'$s^{{{i}}}$' + (' (output)' if i == 0 else ''))
        ax.set_xlabel('t (steps back from T / nudged steps)')
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('solid: BPTT, dashed: EP')
    return [_save(fig, folder, 'gdu_neurons.png')]


def plot_T(tr, folder, n_curves=10):
    """Synaptic traces per weight tensor (instantaneous): solid ∇BPTT_θ(t), dashed −ΔEP_θ(β, t)."""
    gen = torch.Generator().manual_seed(1)
    labels = tr.get('labels', {})
    keys = [k for k in tr['nT'] if k.endswith('weight')]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        n, d = tr['nT'][k].flatten(1), tr['dT'][k].flatten(1)
        t = range(n.shape[0])
        for c, j in enumerate(_units(n.shape[1], n_curves, gen)):
            col = f'C{c % 10}'
            ax.plot(t, n[:, j], '-', color=col)
            ax.plot(t, d[:, j], '--', color=col)
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


def plot_folder(folder='.', show=False):
    """Draw every figure whose data the folder holds; returns the PNG paths."""
    paths = []
    if os.path.exists(os.path.join(folder, 'metrics.csv')):
        paths += plot_results(folder)
    if os.path.exists(os.path.join(folder, 'gdu.pt')):
        tr = torch.load(os.path.join(folder, 'gdu.pt'), weights_only=False)
        paths += plot_S(tr, folder) + plot_T(tr, folder)
    if os.path.exists(os.path.join(folder, 'gdu_stats.csv')):
        paths += plot_Hist(folder)
    if os.path.exists(os.path.join(folder, 'receipe_summary.csv')):
        paths += plot_receipe(folder)
    if show:
        plt.show()
    plt.close('all')
    return paths


if __name__ == '__main__':
    for p in plot_folder('.', show=SHOW):
        print('wrote', p)
