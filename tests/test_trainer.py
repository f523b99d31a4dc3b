"""suite/trainer.py's shared pieces on their own: the run folder (new or resumed), the metrics CSV written by fit, and the
extension hooks."""
import pandas as pd
import torch

from suite import trainer


class Count(trainer.Extension):
    def __init__(self):
        self.n, self.saved = 0, []

    def epoch_row(self):
        self.n += 1
        return {'extra': float(self.n)}

    def save(self, folder):
        self.saved.append(folder)


def test_fit_writes_the_metrics_csv_with_the_extension_columns(tmp_path):
    w = torch.nn.Parameter(torch.ones(2))
    other = [{'epoch': 1, 'loss': 9.0}]                         # rows of another net of the same run
    history, ext = [], Count()
    trainer.fit(str(tmp_path), 2, history, lambda e: {'loss': 1.0 / e}, lambda h: None, [w],
                metrics='metrics.csv', table=lambda: other + history, extension=ext)
    df = pd.read_csv(tmp_path / 'metrics.csv')
    assert list(df.columns) == ['epoch', 'loss', 'extra', 'epoch_seconds', 'seconds']
    assert df['loss'].tolist() == [9.0, 1.0, 0.5] and df['extra'].tolist()[1:] == [1.0, 2.0]
    assert ext.saved == [str(tmp_path)] * 2


def test_open_run_new_or_resumed(tmp_path, capsys):
    new = tmp_path / 'new'
    assert trainer.open_run(lambda: (new.mkdir(), str(new))[1]) == str(new)
    old = tmp_path / 'old'
    old.mkdir()
    (old / 'Hyperparameters.txt').write_text('python main.py --archi fc\n')
    made = []
    assert trainer.open_run(lambda: made.append(1), str(old), ['--load-path', str(old)], 'Hyperparameters.txt') == \
        str(old)
    assert not made
    assert (old / 'Hyperparameters.txt').read_text().splitlines()[-1] == f'python main.py --load-path {old}'
    assert capsys.readouterr().out.splitlines() == [f'results: {new}', f'results: {old}']
