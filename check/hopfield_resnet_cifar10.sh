#!/usr/bin/env bash
# Hopfield-ResNet (Elayedam & Srinivasan 2025), the paper's CIFAR-10 run: Hopfield-ResNet13 with relu6, squared
# error, centered EP (β 0.1), 120 / 50 iterations, SGD with Nesterov momentum, cosine annealing over 300 epochs
# (93.92 % reported); then the VGG5 baseline with the same settings and its gains.
python main.py --network hopfieldresnet13 --dataset CIFAR10 --epochs 300 --activation relu6 --lossfn MSE --optimizer sgd --beta 0.1 --num_iterations_inference 120 --num_iterations_training 50 --weight_gains 0.6,0.6,0.7,0.6,0.7,0.6,0.6,0.7,0.6,0.6,0.7,0.6,0.8 --learning_rates_weights 0.03 --learning_rates_biases 0.03 --momentum 0.9 --weight_decay 2.5e-4 --batch_size 128 --device 0
python main.py --network vgg5 --dataset CIFAR10 --epochs 300 --activation relu6 --lossfn MSE --optimizer sgd --beta 0.1 --num_iterations_inference 120 --num_iterations_training 50 --weight_gains 0.4,0.7,0.6,0.3,0.6 --learning_rates_weights 0.03 --learning_rates_biases 0.03 --momentum 0.9 --weight_decay 2.5e-4 --batch_size 128 --device 0
