"""One entry point for the suite: `python main.py --action <train|plotcurves|receipe|gducheck|evaluate> ...`.

Every paper adds an argument group (its own flags, same names as its original code) and a `run(args, argv)`;
the paper a command belongs to is inferred from the flags it uses, so the papers' commands run unchanged.
"""
import os
import sys

from suite import cli
from suite import commandline
from suite import entry
from suite import runlog

from papers import ernoult2019
from papers import eplcanet
from papers import hopfield_resnet
from papers import laborieux2021
from papers import laydevant2021

# Each paper module has FLAGS (the flags only it uses), add_args(parser) and run(args, argv).
# The first paper is the default when a command uses no paper-specific flag.
PAPERS = [ernoult2019, eplcanet, laborieux2021, laydevant2021, hopfield_resnet]


def build_parser():
    parser = cli.SuiteParser(
        prog='main.py', description='Equilibrium Propagation research suite: one command line for every paper.',
        formatter_class=lambda prog: cli.argparse.HelpFormatter(prog, max_help_position=36, width=110))
    cli.add_suite_args(parser)
    for paper in PAPERS:
        paper.add_args(parser)
    return parser


# The flags of each paper are its own; a command line uses the flags of one paper. EPLCANet extends Laborieux et al.
# 2021 and shares its flags, so the two form one family.
FAMILIES = (('Ernoult et al. 2019', (ernoult2019,)), ('Laborieux et al. 2021 / EPLCANet', (laborieux2021, eplcanet)),
            ('Laydevant et al. 2021 (binary EP)', (laydevant2021,)),
            ('Hopfield-ResNet (Elayedam & Srinivasan 2025)', (hopfield_resnet,)))
# Shared flags (suite/cli.py) that a paper does not use, and what it uses instead.
_LABORIEUX_NAMES = {'--T': 'its free-phase steps are --T1', '--Kmax': 'its nudged-phase steps are --T2',
                    '--beta': 'its nudging strength is --betas 0.0 β',
                    '--padding': 'its conv paddings are --paddings (one per conv layer)',
                    '--Fpool': 'its poolings are --pools (one letter per conv layer: m, a or i)'}
NOT_USED = {'ernoult2019': {'--optim': 'it trains with SGD at the learning rates of --lr_tab',
                            '--archi': 'its layers are --size_tab (from the output to the input) and --C_tab'},
            'laborieux2021': _LABORIEUX_NAMES, 'eplcanet': _LABORIEUX_NAMES,
            'laydevant2021': {f: 'its weights are binary (±α, the flip rule); analog devices train the Ernoult 2019, '
                                 'Laborieux 2021 and EPLCANet nets' for f in ('--analog', '--analog-tau', '--analog-preset', '--analog-fast-lr',
                                                          '--analog-reads')},
            'hopfield_resnet': hopfield_resnet.NOT_USED}


def flags_used(argv, parser):
    """The option strings of a (parsed) command line, in order, abbreviations resolved as argparse does."""
    known = parser._option_string_actions
    out = []
    for a in argv:
        if not a.startswith('--') or a == '--':
            continue
        name = a.split('=')[0]
        if name not in known:
            hits = {known[k] for k in known if k.startswith(name)}
            if len(hits) != 1:
                continue
            name = next(k for k in known if k.startswith(name))
        out.append(name)
    return out


def paper_of(argv, parser=None):
    """The paper of a command line: the one whose own flags it uses. Without any, --archi fc|conv or --optim ep|bptt
    select the binary-EP paper, --archi <sizes> or --optim sgd|adam Laborieux et al. 2021, an EPLCANet action
    EPLCANet and evaluate Laborieux et al. 2021; else the first paper. A Laborieux command line with an EPLCANet
    model or action is EPLCANet's (the one place where commands are routed). Flags of two papers, and shared flags
    the selected paper does not use (e.g. --T for Laborieux, whose name for it is --T1), are usage errors."""
    parser = parser or build_parser()
    acts = parser._option_string_actions
    owner = {}
    for i, (_, papers) in enumerate(FAMILIES):
        for paper in papers:
            for f in paper.FLAGS:
                if f in acts:
                    owner[acts[f]] = i
    used = flags_used(argv, parser)
    args = parser.parse_args(argv)
    own = [(f, owner[acts[f]]) for f in used if acts[f] in owner]
    selector = None
    if own:
        selector, fam = own[0]
        for f, i in own:
            if i != fam:
                raise cli.UsageError(f'{f} is a flag of {FAMILIES[i][0]}, but {selector} is one of '
                                     f'{FAMILIES[fam][0]}: a command line uses the flags of one paper (python main.py '
                                     f'--help lists them by paper)')
        papers = FAMILIES[fam][1]
        paper = next((p for p in papers[::-1] if set(used) & p.FLAGS), papers[0])
    else:
        paper = PAPERS[0]
        if args.archi:
            selector = '--archi'
            paper = laydevant2021 if args.archi[0] in ('fc', 'conv') else laborieux2021
        elif args.optim:
            selector = '--optim'
            paper = laydevant2021 if args.optim in ('ep', 'bptt') else laborieux2021
        elif args.action in eplcanet.ACTIONS or args.action == 'evaluate':
            selector = f'--action {args.action}'
            paper = eplcanet if args.action in eplcanet.ACTIONS else laborieux2021
    if paper is laborieux2021 and (args.model in eplcanet.MODELS or args.action in eplcanet.ACTIONS):
        paper = eplcanet                            # Laborieux's flags, an EPLCANet model or action
    name = next(n for n, papers in FAMILIES if paper in papers)
    for f in used:
        if f in NOT_USED[paper.NAME]:
            why = f'selected by {selector}' if selector else 'the default paper'
            raise cli.UsageError(f'{f} is not a flag of {name} ({why}): {NOT_USED[paper.NAME][f]}')
    return paper


def is_nest2024(argv):
    """A command line of Nest & Ernoult 2024 (routed to papers.nest2024): it names a Hydra config, or resumes
    (--load-path) a folder holding a config.yaml of that paper's runs."""
    if any(a == '--config-name' or a.startswith('--config-name=') for a in argv):
        return True
    for i, a in enumerate(argv):
        path = a.split('=', 1)[1] if a.startswith('--load-path=') else (
            argv[i + 1] if a == '--load-path' and i + 1 < len(argv) else None)
        if path and os.path.isfile(os.path.join(path, 'config.yaml')):
            return True
    return False


def main(argv=None):
    """Run a command line (sys.argv[1:] by default); returns the result folder. Every fault ends in one line and an
    exit code (suite/entry.py)."""
    given = sys.argv[1:] if argv is None else list(argv)
    return entry.run('main.py', given, dispatch)


def dispatch(given):
    """The command line to its paper: a Hydra line (--config-name=…) to Nest & Ernoult 2024, the others parsed here
    (with --load-path, after the run's saved command lines) and routed by their flags (paper_of)."""
    if is_nest2024(given):                         # Hydra command lines (--config-name=…) of Nest & Ernoult 2024
        from papers import nest2024                # (imported here: Hydra costs start-up time to the other papers)
        return nest2024.main(given)
    parser = build_parser()
    args, argv = commandline.resolve(given, parser)
    args.argv_given = given                         # what this command said (a resume appends it to its folder)
    cli.finalise_suite_args(args)                   # --threads, --results-dir checked; --dry-run under dry-run/
    paper = paper_of(argv, parser)
    runlog.note(paper=paper.NAME)
    return paper.run(args, argv)


if __name__ == '__main__':
    main()
