#!/usr/bin/env bash
# Laborieux et al. 2021, theorem check on an MLP (MSE): small β, big β, big β symmetric.
python main.py --model 'MLP' --task 'MNIST' --archi 784 512 10 --act 'tanh' --todo 'gducheck' --betas 0.0 0.01 --T1 30 --T2 10 --mbs 50 --loss 'mse' --save --device 7 --seed 0
python main.py --model 'MLP' --task 'MNIST' --archi 784 512 10 --act 'tanh' --todo 'gducheck' --betas 0.0 0.1 --T1 30 --T2 10 --mbs 50 --loss 'mse' --save --device 7 --seed 0
python main.py --model 'MLP' --task 'MNIST' --archi 784 512 10 --act 'tanh' --todo 'gducheck' --betas 0.0 0.1 --T1 30 --T2 10 --mbs 50 --loss 'mse' --save --device 7 --seed 0 --thirdphase
