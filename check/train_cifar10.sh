#!/usr/bin/env bash
# Laborieux et al. 2021: a 3-layer ConvNet on CIFAR-10, random-sign EP, theorem checked during training.
# The original script passed --save-nrn (not a flag of its parser) and no --paddings for its 3 conv layers
# (the default has 2 entries): both are fixed here (paddings 1 1 1).
python main.py --model 'CNN' --task 'CIFAR10' --channels 128 256 512 --kernels 3 3 3 --pools 'mmm' --strides 1 1 1 --paddings 1 1 1 --fc 10 --optim 'adam' --lrs 5e-5 5e-5 1e-5 7e-6 --epochs 1 --act 'hard_sigmoid' --todo 'train' --betas 0.0 0.5 --T1 200 --T2 20 --mbs 128 --check-thm --random-sign --loss 'mse' --save --device 0
