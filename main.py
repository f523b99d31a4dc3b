"""One entry point for the suite: `python main.py --action <train|plotcurves|receipe|gducheck|evaluate> ...`.

Every paper adds an argument group (its own flags, same names as its original code) and a `run(args, argv)`;
the paper a command belongs to is inferred from the flags it uses, so the papers' commands run unchanged.
"""
import sys

import cli
import re

import ernoult2019
import eplcanet
import laborieux2021
import laydevant2021

# Each paper module has FLAGS (the flags only it uses), add_args(parser) and run(args, argv).
# The first paper is the default when a command uses no paper-specific flag.
PAPERS = [ernoult2019, eplcanet, laborieux2021, laydevant2021]


def build_parser():
    parser = cli.SuiteParser(
        prog='main.py', description='Equilibrium Propagation research suite: one command line for five papers.',
        formatter_class=lambda prog: cli.argparse.HelpFormatter(prog, max_help_position=36, width=110))
    cli.add_suite_args(parser)
    for paper in PAPERS:
        paper.add_args(parser)
    return parser


def normalise_argv(argv, parser):
    """Understand two typos of the published commands instead of rejecting them:
    '-- layersList' (a space after the dashes) and '8e-8--conv_threshold' (a value glued to the next flag)."""
    known = set(parser._option_string_actions)
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == '--' and i + 1 < len(argv) and '--' + argv[i + 1] in known:
            out.append('--' + argv[i + 1])
            i += 2
            continue
        m = re.fullmatch(r'([-+]?[0-9.]+(?:e[-+]?\d+)?)(--[A-Za-z_][\w-]*)', a)
        if m and m.group(2) in known:
            out += [m.group(1), m.group(2)]
        else:
            out.append(a)
        i += 1
    return out


def paper_of(argv):
    """The paper whose own flags the command uses (the first paper when none is specific)."""
    used = {a.split('=')[0] for a in argv if a.startswith('--')}
    for paper in PAPERS:
        if used & paper.FLAGS:
            return paper
    return PAPERS[0]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        argv = normalise_argv(argv, parser)
        args = parser.parse_args(argv)
        cli.finalise_suite_args(args)               # --threads; --dry-run writes under <--results-dir>/dry-run/
        return paper_of(argv).run(args, argv)
    except cli.UsageError as e:                     # bad flags, absent data: one line, exit 2, no traceback
        print(f'main.py: error: {e}', file=sys.stderr)
        raise SystemExit(2)


if __name__ == '__main__':
    main()
