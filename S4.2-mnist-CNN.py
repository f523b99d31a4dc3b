"""Wu et al. 2024, Fig. 5 right: a LeNet-like CNN on MNIST (--SETTING "FP SGD" | "Analog SGD" | "TT-v1", --tau).
`python S4.2-mnist-CNN.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S4.2-mnist-CNN')
