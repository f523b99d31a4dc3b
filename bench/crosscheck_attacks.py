"""Cross-check of attacks.pgd against torchattacks (PGD / PGDL2 without random start) on a trained EP network.

torchattacks is not a dependency (its requirements pin an old `requests`); install it apart, e.g.
    python -m venv --system-site-packages /tmp/ta && /tmp/ta/bin/pip install --no-deps torchattacks==3.5.1
    /tmp/ta/bin/python bench/crosscheck_attacks.py --load-path results/EP/cel/<date>/<time> --task mnist5k

Both attacks get the same differentiable model (attack_steps of the dynamics from zeros, through net.front) and the
same step α = 2.5 ε / 20; the script prints the largest difference of the adversarial images and both accuracies.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from papers.eplcanet import attacks                                             # noqa: E402
from papers import eplcanet                                            # noqa: E402
import main                                                # noqa: E402
import netFunctions as nf                                  # noqa: E402


class Logits(torch.nn.Module):
    """The BPTT path of attacks.Classifier.loss_grad as a module returning logits."""

    def __init__(self, net, steps):
        super().__init__()
        self.net, self.steps = net, steps

    def forward(self, x):
        s = nf.relax(self.net, self.net.front(x), self.net.init_state(x.shape[0]), None, 0.0, self.steps)
        return self.net.output(s)


def run():
    import torchattacks
    ap = argparse.ArgumentParser()
    ap.add_argument('--load-path', required=True)
    ap.add_argument('--task', default='mnist5k')
    ap.add_argument('--n', type=int, default=64)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--attack-step', type=int, default=10)
    a = ap.parse_args()
    args = main.build_parser().parse_args(['--todo', 'attack', '--task', a.task, '--load-path', a.load_path,
                                           '--attack-step', str(a.attack_step), '--predict-step', '20'])
    eplcanet.check_args(args)
    xte, yte = eplcanet.lab.load_split(args, False)
    model = eplcanet.build(args, tuple(xte.shape[1:]))
    eplcanet.load_weights(args, model)
    model.eval()
    clf = attacks.Classifier(model, *eplcanet.norm_stats(args), predict_steps=20, attack_steps=a.attack_step)
    x, y = clf.denormalize(xte[:a.n]), yte[:a.n]
    m = Logits(model, a.attack_step).eval()
    for norm, eps in ((attacks.INF, 0.05), (attacks.INF, 0.1), (2, 1.0), (2, 3.0)):
        mine = attacks.pgd(clf, x, y, eps, norm, steps=a.steps)
        kind = torchattacks.PGD if norm == attacks.INF else torchattacks.PGDL2
        atk = kind(m, eps=eps, alpha=2.5 * eps / 20, steps=a.steps, random_start=False)
        if clf.mean is not None:
            atk.set_normalization_used(mean=list(clf.mean.flatten().tolist()), std=list(clf.std.flatten().tolist()))
        theirs = atk(x, y)
        print(f'L{"inf" if norm == attacks.INF else 2} eps {eps}: max |ours - torchattacks| = '
              f'{(mine - theirs).abs().max().item():.2e}; adversarial accuracy ours {attacks.accuracy(clf, mine, y):.1f} %'
              f', torchattacks {attacks.accuracy(clf, theirs, y):.1f} %')


if __name__ == '__main__':
    run()
