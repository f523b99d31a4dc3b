"""S4 and A12 of Wu et al. 2024: classifiers trained by backprop with FP SGD, Analog SGD or TT-v1 (S4.1 the MNIST FCN,
S4.2 the LeNet-like CNN, A12 ResNets fine-tuned on CIFAR-10 with an analog last layer)."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import analog
from ep import estimators
from netClasses import Feedforward
from papers.wu2024 import nets as wu_nets
from papers.wu2024.figures import arrays, new_folder
from suite import checkpoints
from suite import data
from suite import distributed
from suite import rundir
from suite import trainer
from suite.cli import pick_device, say, seed_everything

# S4: epochs, batch size (train and test), learning rate, StepLR(35, 0.1), device preset
MNIST = {'S4.1-mnist-FCN': dict(net=wu_nets.FCN, batch_size=10),
         'S4.2-mnist-CNN': dict(net=wu_nets.LeNet, batch_size=8)}
MNIST_EPOCHS, MNIST_LR, STEP, GAMMA = 80, 0.05, 35, 0.1
# A12 (device preset S5): CIFAR-10 resized to 224, ImageNet normalisation, batch 128, 100 epochs, StepLR(50, 0.1)
RESNET_EPOCHS, RESNET_BATCH, RESNET_STEP, RESNET_SIZE = 100, 128, 50, 224
RESNET_LR = {'FP SGD': 0.15, 'Analog SGD': 0.075, 'TT-v1': 0.075}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DRY_EPOCHS, DRY_BATCHES, DRY_RESNET_BATCH, DRY_RESNET_SIZE = 1, 2, 2, 64


CHECKPOINT = 'checkpoint.tar'
WHAT = 'a checkpoint.tar of a Wu 2024 S4 / A12 training run'


def tensorboard(folder):
    """A TensorBoard writer into <folder>/tensorboard (the original plot scripts read 'Accuracy/test'), or None
    when tensorboard does not import."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:
        return None
    return SummaryWriter(os.path.join(folder, 'tensorboard'))


def classifier(cfg, argv, net, opt, splits, device, gen, transform, step, items, arch):
    """Batches of the (train, test) splits, then `--evaluate` of the --load-path run's model or the training run.
    transform(train): the batches' transform (None: the images as they are)."""
    (xtr, ytr), (xte, yte) = splits
    test_b = data.Batches(xte, yte, cfg.batch_size, device=device, max_batches=cfg.max_batches,
                          transform=transform(False))
    if cfg.model_from:
        train_b = data.Batches(xtr, ytr, cfg.batch_size, device=device, max_batches=cfg.max_batches,
                               transform=transform(False))
        return evaluate_saved(cfg, net, [('train', train_b), ('test', test_b)])
    train_b = data.Batches(xtr, ytr, cfg.batch_size, True, device=device, generator=gen, max_batches=cfg.max_batches,
                           transform=transform(True))
    return fit_classifier(cfg, argv, net, opt, train_b, test_b, gen, step, items, arch)


def fit_classifier(cfg, argv, net, opt, train_b, test_b, gen, step, items, arch):
    """The epochs of S4 / A12 through the suite's trainer, one mini-batch by estimators.Backprop: StepLR(step, 0.1)
    per epoch, metrics.csv (epoch, setting, tau, train and test loss and accuracy, lr, seconds), TensorBoard scalars,
    checkpoint.tar after every epoch (a --load-path run resumes from it), model.pt with --save-checkpoint, the
    figure. The test loss is the original's, (1/N) Σ_batches B_b ℓ̄_b (the mini-batches' mean losses times their
    sizes over the N test images), which is trainer.evaluate's mean per-sample loss (1/N) Σ_i ℓ_i."""
    model = net.module
    sched = torch.optim.lr_scheduler.StepLR(opt, step, GAMMA)
    items = [('SETTING', cfg.setting), ('tau', cfg.tau), ('rpu', cfg.rpu), ('epochs', cfg.epochs),
             ('batch size', cfg.batch_size), ('lr', [g['lr'] for g in opt.param_groups]),
             ('StepLR', (step, GAMMA)), ('device', next(model.parameters()).device)] + items
    history = []
    if cfg.resume:                  # the tiles' device state is in the model's state dict, the pulses' RNG in torch's
        history = checkpoints.restore(os.path.join(cfg.resume, CHECKPOINT), model, opt, sched, gen, WHAT)['history']
    folder = trainer.open_run(lambda: new_folder(cfg, argv, items, model), cfg.resume, cfg.argv_given or argv,
                              prog=cfg.script + '.py')
    writer = tensorboard(folder) if distributed.is_main() else None     # rank 0 alone writes
    estimate = estimators.Backprop()

    def run_epoch(epoch):
        train = trainer.train(net, opt, train_b, lambda x, y: estimate(net, x, y, opt), loss=True)
        test = trainer.evaluate(net, test_b)
        row = dict(setting=cfg.setting, tau=cfg.tau, train_loss=train['loss'], train_acc=100 - train['error'],
                   test_loss=test['loss'], test_acc=100 - test['error'], lr=opt.param_groups[-1]['lr'])
        sched.step()
        if writer is not None:
            writer.add_scalar('Accuracy/test', row['test_acc'] / 100, epoch)
            writer.add_scalar('Loss/train', row['train_loss'], epoch)
        say(f'epoch {epoch}: train loss {row["train_loss"]:.4f}, train acc {row["train_acc"]:.2f} %, '
            f'test acc {row["test_acc"]:.2f} %')
        return row

    def save(history):
        checkpoints.save(os.path.join(folder, CHECKPOINT), model, opt, history[-1]['epoch'] if history else 0,
                         history, scheduler=sched, generator=gen, config=cfg)

    trainer.fit(folder, cfg.epochs, history, run_epoch, save, model.parameters(), metrics='metrics.csv',
                prog=cfg.script + '.py', plot=rundir.plot_folder)
    if writer is not None:
        writer.close()
    if cfg.save_checkpoint:
        rundir.save({'model': model.state_dict(), 'arch': arch, 'setting': cfg.setting, 'tau': cfg.tau,
                     'arrays': arrays(model)}, os.path.join(folder, 'model.pt'))
    rundir.plot_folder(folder)
    return folder


def evaluate_saved(cfg, net, splits):
    """--evaluate: the loss and accuracy of the --load-path run's last checkpoint on each (name, batches), printed and
    appended to its hyperparameters.txt (not as a command line: a later resume does not take --evaluate)."""
    path = os.path.join(cfg.model_from, CHECKPOINT)
    ck = checkpoints.load(path, ('model', 'epoch'), WHAT)
    checkpoints.load_state(net.module, ck['model'], path)
    lines = [f'evaluated with: {rundir.command_line(cfg.argv_given, prog=cfg.script + ".py")}']
    for name, batches in splits:
        r = trainer.evaluate(net, batches)
        lines.append(f'{name} after epoch {ck["epoch"]}: loss {r["loss"]:.4f}, accuracy {100 - r["error"]:.2f} %')
        say(lines[-1])
    rundir.append_hyperparameters(cfg.model_from, lines)
    return cfg.model_from


def mnist(cfg, argv):
    """S4.1 / S4.2: NLL of the log-softmax output, AnalogSGD (plain SGD for FP SGD) at lr 0.05, StepLR(35, 0.1)."""
    device = pick_device(cfg.device, '--CUDA', cfg.script + '.py')
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    splits = [data.load_or_synthetic(cfg.dataset, cfg.data_root, train, cfg.dry_run) for train in (True, False)]
    model = analog.convert(MNIST[cfg.script]['net'](), cfg.rpu).to(device)
    opt = analog.AnalogSGD(model.parameters(), lr=MNIST_LR)
    return classifier(cfg, argv, Feedforward(model, F.nll_loss), opt, splits, device, gen, lambda train: None, STEP,
                      [('dataset', cfg.dataset)], MNIST[cfg.script]['net'].__name__)


def resnet_transform(train, size):
    """CIFAR-10 in [0, 1] → resized to size × size (bilinear), random horizontal and vertical flips (training), ImageNet
    normalisation; on the batch's device."""
    def f(x, generator=None):
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        if train:
            for dim in (-1, -2):
                flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
                x = torch.where(flip, x.flip(dim), x)
        return data.normalize(x, IMAGENET_MEAN, IMAGENET_STD).to(x.device)
    return f


def resnet_model(cfg):
    """torchvision's (or netWu's) ResNet with the ImageNet weights of the file, its fc replaced by an analog
    Linear(num_ftrs → 10); without -FFT the backbone is frozen."""
    model, source = wu_nets.resnet(cfg.model)
    if cfg.weights:
        state = checkpoints.load(cfg.weights, (), f"torchvision's ImageNet weights of {cfg.model}", '--weights')
        checkpoints.load_state(model, state, cfg.weights, f"give torchvision's ImageNet weights of {cfg.model} "
                                                      f"({wu_nets.TORCHVISION_WEIGHTS[cfg.model]}) to --weights")
    if not cfg.fft:
        for p in model.parameters():
            p.requires_grad_(False)
    head = nn.Linear(model.fc.in_features, 10)
    model.fc = analog.convert(head, cfg.rpu)
    return model, source


def param_groups(model, lr):
    """The backbone's trainable parameters at lr/10 (none without -FFT), the whole head fc (its analog weights and
    digital bias) at lr. (The original gave lr to the optimizer's last parameter only: the head's bias.)"""
    body = [p for name, p in model.named_parameters() if not name.startswith('fc.') and p.requires_grad]
    return ([{'params': body, 'lr': lr / 10}] if body else []) + [{'params': list(model.fc.parameters()), 'lr': lr}]


def resnet(cfg, argv):
    """A12: cross-entropy, AnalogSGD with two groups (backbone lr/10, analog head lr), StepLR(50, 0.1)."""
    device = pick_device(cfg.device, '--CUDA', cfg.script + '.py')
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    n = 2 * DRY_RESNET_BATCH
    splits = [data.load_or_synthetic('cifar10', cfg.data_root, train, cfg.dry_run, n) for train in (True, False)]
    model, source = resnet_model(cfg)
    model = model.to(device)
    opt = analog.AnalogSGD(param_groups(model, RESNET_LR[cfg.setting]), lr=RESNET_LR[cfg.setting])
    items = [('model', cfg.model), ('FFT', cfg.fft), ('network from', source), ('image size', cfg.image_size),
             ('ImageNet weights', cfg.weights or 'none (random)'), ('dataset', 'cifar10')]
    return classifier(cfg, argv, Feedforward(model, F.cross_entropy), opt, splits, device, gen,
                      lambda train: resnet_transform(train, cfg.image_size), RESNET_STEP, items, cfg.model)
