#!/usr/bin/env bash
# Laborieux et al. 2021: continual EP (CEP) on an MLP, symmetric.
python main.py --model 'MLP' --alg 'CEP' --task 'MNIST' --archi 784 512 10 --optim 'sgd' --lrs 0.0056 0.0028 --epochs 100 --act 'mysig' --todo 'train' --betas 0.0 0.2 --T1 40 --T2 15 --mbs 20 --device 7 --save --thirdphase
