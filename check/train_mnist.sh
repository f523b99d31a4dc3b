#!/usr/bin/env bash
# Laborieux et al. 2021: MLP on MNIST, one-sided EP with the theorem checked during training.
python main.py --model 'MLP' --task 'MNIST' --archi 784 512 10 --optim 'adam' --lrs 5e-4 5e-4 --epochs 2 --act 'mysig' --todo 'train' --betas 0.0 0.1 --T1 30 --T2 10 --check-thm --mbs 50 --device 0 --save
