"""Networks of Wu et al. 2024 (analog in-memory training), built digitally and made analog by analog.convert:

- FCN: the MNIST fully-connected net 784-256-128-10, sigmoid hidden units, log-softmax output (S4.1);
- LeNet: the LeNet-5-like MNIST ConvNet of S4.2 (two 5×5 convs with tanh and 2×2 max-pools, 512-128-10);
- ResNet18/34/50 with torchvision's state-dict keys (conv1, bn1, layer1…layer4, fc), so that torchvision's ImageNet
  weights load into them; `resnet(name)` returns torchvision's own model when torchvision imports (A12).

The ResNets are torchvision's v1.5 architecture: y = relu(F(x) + shortcut(x)), the stride of a bottleneck on its
3×3 conv, a 1×1 conv + BN shortcut where the shape changes.
"""
import torch
import torch.nn as nn


def FCN():
    """784 → 256 → 128 → 10 with σ(·) = sigmoid, then log-softmax (the loss is the NLL)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 128), nn.Sigmoid(),
                         nn.Linear(128, 10), nn.LogSoftmax(dim=1))


def LeNet():
    """conv(1→16, 5) → tanh → maxpool 2 → conv(16→32, 5) → tanh → maxpool 2 → tanh → flatten (32·4·4 = 512)
    → Linear(512 → 128) → tanh → Linear(128 → 10) → log-softmax (the second tanh after the pool is the original's)."""
    return nn.Sequential(nn.Conv2d(1, 16, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.Tanh(),
                         nn.MaxPool2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(512, 128), nn.Tanh(), nn.Linear(128, 10),
                         nn.LogSoftmax(dim=1))


# ---------------------------------------------------------------------------------------------------------------
# ResNets with torchvision's parameter names

def _shortcut(c_in, c_out, stride):
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3×3 convs (ResNet18/34)."""
    expansion = 1

    def __init__(self, c_in, width, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(c_in, width, stride)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """y = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)): 1×1 → 3×3 (stride) → 1×1 with
    4× the width (ResNet50)."""
    expansion = 4

    def __init__(self, c_in, width, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, width * 4, stride)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """Stem (7×7/2 conv, BN, ReLU, 3×3/2 max-pool), four stages of blocks (widths 64…512, stride 2 from the second),
    global average pool, fc → 1000 ImageNet classes."""

    def __init__(self, block, depths, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(n):
                blocks.append(block(c, width, 2 if (j == 0 and i > 0) else 1))
                c = width * block.expansion
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():                  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNETS = {'Resnet18': (BasicBlock, (2, 2, 2, 2)), 'Resnet34': (BasicBlock, (3, 4, 6, 3)),
           'Resnet50': (Bottleneck, (3, 4, 6, 3))}
# the file names of torchvision's ImageNet weights (IMAGENET1K_V1), as its download cache names them
TORCHVISION_WEIGHTS = {'Resnet18': 'resnet18-f37072fd.pth', 'Resnet34': 'resnet34-b627a593.pth',
                       'Resnet50': 'resnet50-0676ba61.pth'}


def resnet(name):
    """(model with 1000 outputs, where it comes from): torchvision's when it imports, else the definition above."""
    try:
        import torchvision                      # optional: a CUDA build that cannot import on the CPU machines
        return getattr(torchvision.models, name.lower())(weights=None), 'torchvision'
    except Exception:
        block, depths = RESNETS[name]
        return ResNet(block, depths), 'netWu.ResNet (torchvision not importable)'
