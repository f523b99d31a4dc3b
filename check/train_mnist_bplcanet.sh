#!/usr/bin/env bash
# EPLCANet (C1) trained by backpropagation through time; the dictionary learns from the classification loss.
# (600 LCA iterations per step of the 30-step free phase, as the original: long on a CPU.)
python main.py --model EPLCACNN --task MNIST --todo train --alg BP --channels 32 32 64 --kernels 5 5 --paddings 0 0 0 --strides 1 1 1 --optim adam --lrs 1e-4 1e-5 8e-6 --pools imm --epochs 20 --act mysig --betas 0.0 0.1 --T1 30 --T2 10 --mbs 50 --device 3 --save --lca_lambda 0.25 --tau 200 --softmax --loss cel --seed 2 --lca_iters 600 --dict_loss class
