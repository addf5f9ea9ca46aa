"""fp32 vs bf16 autocast training throughput on this CPU: the GTSRB default model, 1 thread, random data.

    .venv/bin/python benchmarks/amp_cpu.py
"""

import time

import torch
import torch.nn as nn

from cnnsweep.models import create_model


def images_per_s(micro_batch: int, bf16: bool, steps: int) -> float:
    model = create_model("cnn", 43, 3, 32, width=32, head="flatten", head_hidden=256, dropout=0.3,
                         stage_dropout=0.0)
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(micro_batch, 3, 32, 32), torch.randint(0, 43, (micro_batch,))
    for i in range(steps + 2):  # 2 warm-up steps
        if i == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return steps * micro_batch / (time.perf_counter() - start)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for mb, steps in ((32, 28), (128, 6)):
        for bf16 in (False, True):
            print(f"micro-batch {mb} {'bf16' if bf16 else 'fp32'}: {images_per_s(mb, bf16, steps):.0f} img/s", flush=True)
