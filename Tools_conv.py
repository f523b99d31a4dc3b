"""Binary EP, conv architecture: the same loops and files as Tools_fc.py; the results columns name the classifier
layers fc_k (output first) and the conv layers conv_k (deepest first)."""
from Tools_fc import create_path, results_row, save_hyperparameters, test_bin, train_bin  # noqa: F401


def layer_names(net):
    return [f'fc_{k}' for k in range(len(net.fc))] + [f'conv_{k}' for k in range(len(net.conv))]


def results_row_conv(net, opt, train, test, args):
    return results_row(net, opt, train, test, args, layer_names(net))
