#!/usr/bin/env bash
# EPLCANet (C1): LCA front end + recurrent ConvNet on MNIST, symmetric EP, dictionary learned by its own
# reconstruction update (check/train_mnist_eplcanet.sh of jrego1/EPLCANet).
python main.py --model EPLCACNN --task MNIST --todo train --alg EP --channels 32 32 64 --kernels 5 5 --paddings 0 0 0 --strides 1 1 1 --optim adam --lrs 1e-4 1e-5 8e-6 --pools imm --epochs 20 --act mysig --betas 0.0 0.1 --T1 30 --T2 10 --mbs 50 --device 3 --save --lca_lambda 0.25 --tau 200 --softmax --loss cel --seed 2 --lca_iters 1 --thirdphase --dict_loss recon
