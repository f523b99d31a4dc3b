"""Binary EP (Laydevant et al. 2021): training and test loops, the rows of results.csv, the result folder and the
hyperparameter file. The loops are the suite's (trainer.train, trainer.evaluate; trainer.fit writes
results.csv); this file adds what the paper records: "ave" and "single" errors, losses, flips, thresholds, γ and α
per layer. Tools_conv.py names the conv columns."""
import os

import torch

from ep import estimators
from suite import rundir
from suite import trainer
from Network_fc import log_flip_fraction


def create_path(args):
    """results/DATA-0-<archi>-<dataset>/<date>/S-<k>: a new numbered run folder; the plotting script is copied
    into the date folder (it draws every run of that day)."""
    date_folder = os.path.join(args.results_dir, f'DATA-0-{args.archi}-{args.dataset}', rundir.today())
    folder = rundir.claim_run_dir(date_folder, prefix='S-')
    rundir.copy_plot_script(date_folder)
    return folder


def save_hyperparameters(folder, args, argv, keys):
    title = ('Binary Weights and Activations Equilibrium Propagation ' if args.binary_settings == 'bin_W_N'
             else 'Binary Weights Equilibrium Propagation ')
    items = [(k, getattr(args, k)) for k in keys]
    rundir.write_hyperparameters(folder, argv, items, header=title + '\n   Parameters of the simulation \n',
                                  name='Hyperparameters.txt')


class EpochStats:
    """Accumulates, on the device, the single-neuron errors and the loss of the free-phase outputs."""

    def __init__(self, net):
        dev = next(net.parameters()).device
        self.net, self.n = net, 0
        self.ave, self.single, self.loss = (torch.zeros((), device=dev) for _ in range(3))

    def __call__(self, s, y, label):
        self.ave += (self.net.output(s).argmax(1) != label).sum()
        self.single += (self.net.single(s).argmax(1) != label).sum()
        self.loss += self.net.cost(s, y).sum()
        self.n += label.shape[0]

    def result(self):
        """(ave error %, single error %, loss per sample) over the whole data (sums over the torchrun ranks)"""
        ave, single, loss, n = trainer.totals(self.ave, self.single, self.loss, self.n)
        n = max(n, 1)
        return 100.0 * ave / n, 100.0 * single / n, loss / n


def train_bin(net, opt, batches, args, gen):
    """One epoch of EP (random-sign β when --random_beta 1) or BPTT; returns ave/single errors (%), loss."""
    if args.optim == 'ep':
        estimate = estimators.RandomSign(net.beta, generator=gen) if args.random_beta else \
            estimators.OneSided(net.beta)
    else:
        estimate = estimators.TruncatedBPTT()
    step = (lambda x, y: estimate(net, x, y, opt))
    stats = EpochStats(net)
    opt.reset_flips()
    trainer.train(net, opt, batches, step, desc=f'{args.optim} train', observe=stats)
    return stats.result()


def test_bin(net, batches):
    """Free phase only: ave/single test errors (%) and loss (½||s_0 − y||² per sample); each torchrun rank relaxes
    its shard of every batch."""
    stats = EpochStats(net)
    trainer.evaluate(net, batches, observe=stats)
    return stats.result()


def layer_names(net):
    """Column suffixes of the weight layers (0 = output layer)."""
    return [str(k) for k in range(len(net.binary_layers()))]


def results_row(net, opt, train, test, args, names=None):
    """One row of results.csv (real numbers only)."""
    names = names or layer_names(net)
    row = {'Ave_Train_Error': train[0], 'Ave_Test_Error': test[0], 'Single_Train_Error': train[1],
           'Single_Test_Error': test[1], 'Train_Loss': train[2], 'Test_Loss': test[2]}
    layers = net.binary_layers()
    row.update({f'Nb_Change_Weights_{n}': log_flip_fraction(f, w.numel())
                for n, f, (w, *_) in zip(names, opt.flips, layers)})
    row.update({f'Threshold_{n}': t for n, t in zip(names, opt.thresholds)})
    row.update({f'Gamma_{n}': g for n, g in zip(names, opt.gammas)})
    row.update({f'Alpha_{n}': a for n, a in zip(names, opt.alphas())})
    return row

