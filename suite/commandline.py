"""A command line with --load-path: a run folder's saved command lines are the defaults of the new one.

Generic over the entries (main.py and Wu et al. 2024's scripts): `resolve` parses a command line with its entry's
parser and, when it names a run folder, prepends the folder's command lines, so that the run's own flags are the
defaults and a flag given again overrides them.
"""
import os
import re

from suite import trainer
from suite.cli import UsageError


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


def saved_argv(folder, parser):
    """The command lines of a run folder (the first line of its hyperparameter file, then the line of every
    resume), joined in order: with --load-path they come before the new command line, so that the run's own flags
    are the defaults and a flag given again overrides them. The lines are those of the parser's program
    (`python main.py …`, or a Wu 2024 script's `python S4.1-mnist-FCN.py …`)."""
    path = trainer.hyper_file_of(folder)
    if path is None:
        raise UsageError(f'--load-path {folder}: no hyperparameters.txt in that folder; give the folder of a run '
                             f'made by this suite')
    out = []
    for line in trainer.command_lines(path, parser.prog):
        out += normalise_argv(line, parser)
    return drop_action(out)


TRAINING_ACTIONS = ('advtrain', 'dictlearn')     # actions that a --load-path alone picks up again


def drop_action(argv):
    """argv without its --action/--todo (but advtrain and dictlearn, kinds of training): the saved run's action is
    not the default of a command that loads it (`--load-path <run>` alone resumes training)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in ('--action', '--todo') and i + 1 < len(argv):
            if argv[i + 1] in TRAINING_ACTIONS:
                out += argv[i:i + 2]
            i += 2
            continue
        if not a.startswith(('--action=', '--todo=')) or a.split('=', 1)[1] in TRAINING_ACTIONS:
            out.append(a)
        i += 1
    return out


def resolve(argv, parser):
    """(args, argv) of a command line; with --load-path RUN, argv is the run's saved command lines + this one."""
    argv = normalise_argv(argv, parser)
    args = parser.parse_args(argv)
    if args.load_path and os.path.isdir(args.load_path):
        merged = saved_argv(args.load_path, parser) + argv
        try:
            args = parser.parse_args(merged)
        except UsageError as e:
            raise UsageError(f'--load-path {args.load_path}: its saved command line does not parse ({e})')
        argv = merged
    return args, argv
