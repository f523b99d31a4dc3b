"""Wu et al. 2024, Fig. 5 left: a fully-connected net on MNIST (--SETTING "FP SGD" | "Analog SGD" | "TT-v1", --tau).
`python S4.1-mnist-FCN.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S4.1-mnist-FCN')
