"""Wu et al. 2024, Table 2: ResNet18/34/50 fine-tuned on CIFAR-10 with an analog last layer.
`python A12-resnet-finetune.py --help` lists the flags; the experiment is in papers/wu2024/."""
from papers import wu2024

if __name__ == '__main__':
    wu2024.main('A12-resnet-finetune')
