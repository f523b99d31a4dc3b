"""Wu et al. 2024, Fig. 4 left: the error of Analog SGD against the dynamic-range radius τ.
`python S3.1-ablation-tau.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S3.1-ablation-tau')
