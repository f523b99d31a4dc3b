"""Wu, Gokmen, Rasch & Chen, NeurIPS 2024, "Towards exact gradient-based training on analog in-memory computing":
the experiments of the paper's code, run by the hyphenated entry scripts at the repository root (`python
S1-SGD-diff-lr.py`, `python S4.1-mnist-FCN.py --SETTING="TT-v1" --tau=0.6 --CUDA=0`, …), each a few lines calling
`main(<script name>)`. The device simulator is the package analog, the networks nets.py; here cli.py (the flags of
each script, validated into a frozen Config, and main), toy.py (S1-S3), classify.py (S4 and A12 training) and
figures.py (result folders, the S4 summaries, the S6 histograms).

The update rules compared, element-wise, with g_k the stochastic gradient and τ the dynamic-range radius
of the asymmetric linear device (soft bounds ±τ):

    digital SGD:   W_{k+1} = W_k − α g_k
    Analog SGD:    W_{k+1} = W_k − α g_k − (α/τ) |g_k| ⊙ W_k                      (A-ALD, the closed-form dynamic)
    Tiki-Taka:     P receives the analog update of g_k at W̄ = W + γP; W receives read columns of P (transfer)

S1-S3 compare them on least squares f(W) = (c/N) Σ_n (⟨w, a_n⟩ + b − y_n)², y = A x* (+ bias), c = 1 (MSE) or ½
(MSE/2), full batch: the digital and closed-form curves are analog.ald_step with Gaussian gradient noise σ, the
simulated ones an AnalogLinear trained by AnalogSGD with the script's device preset (gradient noise through the
MVM's weight noise, as the original). The logged loss is f of the weights after each step, divided by the input
size; the final loss of a curve is the mean of its last 20 logged values. S4 trains MNIST nets, A12 fine-tunes
ResNets on CIFAR-10 with an analog last layer, the plot scripts summarise S4 runs, S6 histograms saved weights.

Every script writes results/analog/<script>/<date>/<time>/ (under <--results-dir>/dry-run/ with --dry-run):
hyperparameters.txt (its command line first), a CSV of every curve, the figure as PNG and PDF, and plotFunctions.py,
which redraws the figure when run there. Bad input is one line '<script>.py: error: …' and exit code 2, before any
folder is made.

Differences from the original scripts:
- S3.1 is a real τ sweep (the original was a copy of S2): S2's problem and device preset, τ ∈ TAU_SWEEP.
- S1 adds Tiki-Taka (TT-v1, with γ = 0.4: see S1_TT) to digital and Analog SGD.
- A12 (the 2024 code's S5): the analog head (weight and bias) learns at lr and the backbone at lr/10; the original
  gave lr to "the last parameter" only, which with the toolkit's parameter order is the head's digital bias. It
  printed model.classifier[-1], which ResNets do not have (a crash), not reproduced. ImageNet weights come from a
  local file (nothing is downloaded).
- S4 writes test accuracy per epoch to metrics.csv (and TensorBoard event files when tensorboard imports); the plot
  scripts read metrics.csv. S6 reads the model.pt that S4 writes with --save-checkpoint (the original read paths S4
  never wrote). An absent GPU (--CUDA) runs on the CPU with a warning.
"""
from papers.wu2024.cli import main

__all__ = ['main']
