"""Wu et al. 2024, Fig. 4 right: the error of Analog SGD from different initial points.
`python S3.3-ablation-init.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S3.3-ablation-init')
