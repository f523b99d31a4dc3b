"""Wu et al. 2024, Fig. 5 right: test accuracy of the S4.2 runs, averaged over repeats.
`python S4.2-plot-CNN.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S4.2-plot-CNN')
