"""Learning rates of a linear warm-up + cosine decay from PyTorch's schedulers (for
tests/test_reference_lr_schedule.cpp).

usage: ref_lr_schedule.py LR WARMUP TOTAL MIN_LR_RATIO [LR WARMUP TOTAL MIN_LR_RATIO ...]
Per case, one line: the learning rates of optimizer steps 1..TOTAL separated by spaces
(Python repr, exact):
  steps 1..W:    LambdaLR(opt, lambda e: (e + 1) / W)
  steps W+1..T:  CosineAnnealingLR(opt, T_max=T - W, eta_min=ratio * lr), stepped once before
                 the first decay step (so step s uses torch's eta_t at t = s - W).
Each scheduler.step() follows an optimizer.step(), as in a training loop.
"""
import sys

import torch


def rates_of(lr, warmup, total, ratio):
    param = torch.nn.Parameter(torch.zeros(1))
    rates = []
    if warmup > 0:
        opt = torch.optim.SGD([param], lr=lr)
        warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: (e + 1) / warmup)
        for _ in range(warmup):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            warm.step()
    if total > warmup:
        opt = torch.optim.SGD([param], lr=lr)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=ratio * lr)
        opt.step()
        cosine.step()
        for _ in range(total - warmup):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            cosine.step()
    return rates


def main():
    args = sys.argv[1:]
    if not args or len(args) % 4:
        sys.exit("usage: ref_lr_schedule.py LR WARMUP TOTAL MIN_LR_RATIO [...]")
    for i in range(0, len(args), 4):
        rates = rates_of(float(args[i]), int(args[i + 1]), int(args[i + 2]), float(args[i + 3]))
        print(" ".join(repr(r) for r in rates))


if __name__ == "__main__":
    main()
