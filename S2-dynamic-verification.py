"""Wu et al. 2024, Fig. 3: digital SGD, the closed-form Analog SGD dynamic and simulated devices, per τ.
`python S2-dynamic-verification.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('S2-dynamic-verification')
