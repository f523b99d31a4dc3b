"""The records a run leaves beside its results: run.log in its folder (what it printed) and its line in runs.csv
under the results folder (what ran, when, how it ended, its final metrics).

One Record per command line: suite/entry.run opens it first thing and closes it with the run's status. On rank 0
(the rank that writes) sys.stdout and sys.stderr are teed from then on. What is printed before the run's folder
is known (the warnings of data loading, …) is held in memory; trainer.open_run calls `folder_known`, which writes
it to <folder>/run.log after a line naming the command (`# <start> python main.py …`) and appends every later line
there, up to the entry's last line (its error line, if any). A resume appends to the run.log of its folder.
Progress bars are not kept: a line is what is left after its last carriage return, which is how tqdm redraws and
erases its bars. A run.log that cannot be written (a full disk) stops being written; the run goes on.

runs.csv lists one row per run (per command line that opened a folder, so a resume is a row of its own):

    folder      the run folder, relative to runs.csv's folder when it is inside it
    paper       ernoult2019, laborieux2021, eplcanet, laydevant2021, nest2024, wu2024
    command     the command line as typed
    start, end  local time, to the second
    status      running (the entry has not ended: also a run killed without a chance to say so), done, interrupted
                (Ctrl-C), stopped non-finite, failed (an error after the folder was made)
    epoch, method, test_acc, test_error, test_loss
                the last row of the folder's metrics.csv (results.csv for binary EP): with several methods (EP and
                its BPTT twin), EP's; test_acc is test_top1 for Nest & Ernoult 2024, test_error
                Ave_Test_Error for binary EP; empty where the run has no such column

It lives in the folder the run's results go to: <--results-dir>/runs.csv, and <--results-dir>/dry-run/runs.csv for
dry runs, so that checks never mix with real runs. The row is added when the folder is known (running) and
rewritten when the entry ends, each time by reading the file, replacing or adding the row and writing it back
atomically (rundir.write_csv) while holding an exclusive lock on the results folder, so that concurrent runs do not
lose each other's rows. Only rank 0 writes. A runs.csv that cannot be read or written is reported in one line and
left as it is; the run goes on.
"""
import csv
import dataclasses
import datetime
import os
import re
import sys


from suite import distributed
from suite import rundir

COLUMNS = ('folder', 'paper', 'command', 'start', 'end', 'status', 'epoch', 'method', 'test_acc', 'test_error',
           'test_loss')
# runs.csv column ← the metrics columns that fill it, first found first
METRICS = {'test_acc': ('test_acc', 'test_top1'), 'test_error': ('test_error', 'Ave_Test_Error'),
           'test_loss': ('test_loss', 'Test_Loss')}
METRICS_FILES = ('metrics.csv', 'results.csv')
HELD_LINES = 10000                  # lines printed before the folder is known, kept for run.log (the last ones)
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def _now():
    return datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')


class Log:
    """Where the teed lines go: held in memory until the folder is known, then appended to <folder>/run.log."""

    def __init__(self):
        self.held, self.file, self.dead = [], None, False

    def open(self, path, header):
        try:
            self.file = open(path, 'a', encoding='utf-8')
        except OSError:                                 # (the run's own write will fail and say why)
            self.stop()
            return
        for line in [header] + self.held:
            self.line(line)
        self.held = []

    def line(self, text):
        if self.dead:
            return
        if self.file is None:
            self.held = (self.held + [text])[-HELD_LINES:]
            return
        try:
            self.file.write(text + '\n')
            self.file.flush()                           # a run killed later keeps what it printed
        except OSError:                                 # (a full disk: the run's own error says so)
            self.stop()

    def stop(self):
        self.close()
        self.held, self.dead = [], True

    def close(self):
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        self.file = None


class Tee:
    """A text stream that writes to `stream` and feeds the complete lines of what it wrote to `log`."""

    def __init__(self, stream, log):
        self.stream, self.log, self.partial, self.redrawn = stream, log, '', False

    def write(self, text):
        n = self.stream.write(text)
        if not self.log.dead:
            self.feed(text)
        return n

    def feed(self, text):
        parts = text.split('\n')
        for i, part in enumerate(parts):
            if '\r' in part:                            # a redrawn line (a progress bar): only what is left of it
                self.partial, self.redrawn = part.rsplit('\r', 1)[1], True
            else:
                self.partial += part
            if i < len(parts) - 1:
                self.log.line(ANSI.sub('', self.partial))
                self.partial, self.redrawn = '', False

    def end(self):
        """The last, unfinished line (kept unless it is what remains of a progress bar)."""
        if self.partial and not self.redrawn:
            self.log.line(ANSI.sub('', self.partial))
        self.partial = ''

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):                        # encoding, isatty, fileno, … of the real stream
        return getattr(self.stream, name)


@dataclasses.dataclass
class Record:
    """What runs.csv and run.log need of one command line."""
    prog: str
    argv: list
    paper: str | None = None
    results_dir: str | None = None
    folder: str | None = None
    start: str = dataclasses.field(default_factory=_now)
    log: Log | None = None
    tees: tuple = ()

    @property
    def command(self):
        return rundir.command_line(self.argv, self.prog)


_current = [None]


def begin(prog, argv, paper=None):
    """Open the record of a command line (entry.run, after joining torchrun's group): on rank 0, tee the output."""
    record = Record(prog, list(argv), paper)
    if distributed.is_main():
        record.log = Log()
        record.tees = (Tee(sys.stdout, record.log), Tee(sys.stderr, record.log))
        sys.stdout, sys.stderr = record.tees
    _current[0] = record
    return record


def note(**fields):
    """Set fields of the current record (paper, results_dir); nothing outside an entry (a test calling a paper)."""
    if _current[0] is not None:
        for k, v in fields.items():
            setattr(_current[0], k, v)


def folder():
    """The folder of the current run, once known (else None)."""
    return _current[0].folder if _current[0] is not None else None


def folder_known(path):
    """trainer.open_run's folder: run.log opens there (with what was printed so far) and runs.csv gets its row."""
    record = _current[0]
    if record is None:
        return
    record.folder = path
    if record.log is not None:
        record.log.open(os.path.join(path, 'run.log'), f'# {record.start} {record.command}')
        update_runs(record, 'running')


def finish(status, extra=''):
    """Close the current record: runs.csv's row gets the status, the end time and the final metrics; `extra` (a
    traceback) goes to run.log only (Python prints it to the terminal itself); the streams are restored."""
    record, _current[0] = _current[0], None
    if record is None or record.log is None:
        return
    for tee in record.tees:
        tee.end()
    for line in extra.splitlines():
        record.log.line(line)
    out, err = record.tees
    if sys.stdout is out:
        sys.stdout = out.stream
    if sys.stderr is err:
        sys.stderr = err.stream
    record.log.close()
    if record.folder is not None:
        update_runs(record, status, end=_now())


def update_runs(record, status, end=''):
    """Write the record's row of runs.csv (see the module's docstring); a failure is one warning line. The csv module,
    not pandas: the first write comes before a run's first line, and pandas costs a quarter of a second to import."""
    if record.results_dir is None or not distributed.is_main():
        return
    path = os.path.join(record.results_dir, 'runs.csv')
    row = {'folder': _relative(record.folder, record.results_dir), 'paper': record.paper or '',
           'command': record.command, 'start': record.start, 'end': end, 'status': status,
           **(final_metrics(record.folder) if end else {})}
    try:
        os.makedirs(record.results_dir, exist_ok=True)      # (a resumed folder may live elsewhere)
        with rundir.locked(record.results_dir):
            rows = _read_rows(path)
            # A run's first write adds its row; its last replaces it. A resume started within the same second as
            # the run it resumes has the same folder and start: the command line and 'running' tell them apart.
            same = [i for i, r in enumerate(rows) if end and r.get('status') == 'running'
                    and (r.get('folder'), r.get('start'), r.get('command')) == (row['folder'], row['start'],
                                                                                  row['command'])]
            if same:
                rows[same[-1]] = row
            else:
                rows.append(row)
            _write_rows(path, rows)
    except (OSError, ValueError, csv.Error) as e:
        print(f'{record.prog}: warning: {path} not updated ({e}); the run itself is unaffected', file=sys.stderr)


def _read_rows(path):
    """The rows of runs.csv as dicts of strings ([] without the file); a row longer than the header is an error."""
    if not os.path.isfile(path):
        return []
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    if any(None in r for r in rows):
        raise ValueError('a row has more fields than the header')
    return rows


def _write_rows(path, rows):
    def write(tmp):
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            out = csv.DictWriter(f, fieldnames=_columns(rows), restval='')
            out.writeheader()
            out.writerows({k: '' if v is None else v for k, v in r.items()} for r in rows)
    rundir.atomic(path, write)


def _columns(rows):
    """COLUMNS, then any other column an older runs.csv has (kept)."""
    extra = [k for r in rows for k in r if k not in COLUMNS]
    return list(COLUMNS) + list(dict.fromkeys(extra))


def _relative(folder, root):
    rel = os.path.relpath(os.path.abspath(folder), os.path.abspath(root))
    return os.path.abspath(folder) if rel.startswith('..') else rel


def final_metrics(folder):
    """{epoch, method, test_acc, test_error, test_loss} of the last row of the folder's metrics (EP's row of the last
    epoch when it has several methods), the columns it has; {} without a readable metrics file."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    for name in METRICS_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError):
            return {}
        if df.empty:
            return {}
        if 'epoch' in df:
            df = df[df['epoch'] == df['epoch'].max()]
        if 'method' in df and (df['method'] == 'EP').any():
            df = df[df['method'] == 'EP']               # the run's subject, beside its BPTT twin
        last = df.iloc[-1]
        out = {k: last[k] for k in ('epoch', 'method') if k in last}
        for col, sources in METRICS.items():
            hit = next((s for s in sources if s in last), None)
            if hit is not None:
                out[col] = last[hit]
        return out
    return {}
