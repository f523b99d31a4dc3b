"""Wu et al. 2024, Fig. 7: weight and saturation histograms of saved S4.1 models.
`python S6-plot-distribution.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S6-plot-distribution')
