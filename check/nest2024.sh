#!/usr/bin/env bash
# Nest & Ernoult 2024 (ff-EBMs): the 33 commands of the README (seed 000), unchanged. Data: CIFAR-10/100 and ImageNet32
# under --data-root (default ./data); add data=mnist5k to run offline on the embedded digits.
# tests/test_nest2024.py and tests/test_check_scripts.py dry-run every line.
python main.py --config-name=gdd
python main.py --config-name=splitting_small_TOL model=splitting_small_1block
python main.py --config-name=splitting_small_TOL model=splitting_small_1block algorithm=bptt
python main.py --config-name=splitting_small_TOL model=splitting_small_2block
python main.py --config-name=splitting_small_TOL model=splitting_small_2block algorithm=bptt
python main.py --config-name=splitting_small_TOL model=splitting_small_3block
python main.py --config-name=splitting_small_TOL model=splitting_small_3block algorithm=bptt
python main.py --config-name=splitting_large_TOL model=splitting_large_3block
python main.py --config-name=splitting_large_TOL model=splitting_large_3block algorithm=bptt
python main.py --config-name=splitting_large_TOL model=splitting_large_4block
python main.py --config-name=splitting_large_TOL model=splitting_large_4block algorithm=bptt
python main.py --config-name=splitting_large_TOL model=splitting_large_6block
python main.py --config-name=splitting_large_TOL model=splitting_large_6block algorithm=bptt
python main.py --config-name=splitting_small model=splitting_small_1block
python main.py --config-name=splitting_small model=splitting_small_1block algorithm=bptt
python main.py --config-name=splitting_small model=splitting_small_2block
python main.py --config-name=splitting_small model=splitting_small_2block algorithm=bptt
python main.py --config-name=splitting_small model=splitting_small_3block
python main.py --config-name=splitting_small model=splitting_small_3block algorithm=bptt
python main.py --config-name=splitting_large model=splitting_large_3block
python main.py --config-name=splitting_large model=splitting_large_3block algorithm=bptt
python main.py --config-name=splitting_large model=splitting_large_4block
python main.py --config-name=splitting_large model=splitting_large_4block algorithm=bptt
python main.py --config-name=splitting_large model=splitting_large_6block
python main.py --config-name=splitting_large model=splitting_large_6block algorithm=bptt
python main.py --config-name=scaling_small model=scaling_small data=cifar100
python main.py --config-name=scaling_small model=scaling_small data=cifar100 algorithm=bptt
python main.py --config-name=scaling_small model=scaling_small data=imagenet32
python main.py --config-name=scaling_small model=scaling_small data=imagenet32 algorithm=bptt
python main.py --config-name=scaling_large model=scaling_large data=cifar100
python main.py --config-name=scaling_large model=scaling_large data=cifar100 algorithm=bptt
python main.py --config-name=scaling_large model=scaling_large data=imagenet32
python main.py --config-name=scaling_large model=scaling_large data=imagenet32 algorithm=bptt
