"""float32 -> bfloat16 rounding by PyTorch (for tests/test_bf16.cpp).

Reads float32 bit patterns, one hexadecimal word per line on stdin; writes, one per line, the
bits of torch.tensor(x, dtype=torch.float32).to(torch.bfloat16) widened back to float32
(torch rounds to nearest, ties to even).
"""
import sys

import numpy as np
import torch


def main():
    words = [int(line, 16) for line in sys.stdin if line.strip()]
    x = torch.from_numpy(np.array(words, dtype=np.uint32).view(np.float32))
    y = x.to(torch.bfloat16).to(torch.float32).numpy().view(np.uint32)
    sys.stdout.write("".join("%08x\n" % int(w) for w in y))


if __name__ == "__main__":
    main()
