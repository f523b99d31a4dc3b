"""Wu et al. 2024, Fig. 1: final loss of digital SGD, Analog SGD and Tiki-Taka (TT-v1) against the step size.
`python S1-SGD-diff-lr.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S1-SGD-diff-lr')
