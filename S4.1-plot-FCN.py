"""Wu et al. 2024, Fig. 5 left: test accuracy of the S4.1 runs, averaged over repeats.
`python S4.1-plot-FCN.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S4.1-plot-FCN')
