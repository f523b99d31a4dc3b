"""Wu et al. 2024, Fig. 4 middle: the error of Analog SGD against the gradient-noise variance σ².
`python S3.2-ablation-sigma.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S3.2-ablation-sigma')
