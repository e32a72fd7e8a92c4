"""Faster fp32 linear layers for CPU inference: oneDNN with the weights reordered once.

`nn.Linear` on CPU calls MKL's sgemm. For the shapes of batched decoding (a few to a few dozen
rows against a large weight) MKL does poorly on this project's AMD EPYC machines: Gemma 3's tied
262k x 640 output projection took 0.27 s for 16 rows and 0.28 s for 32, against 0.13 s and 0.17 s
through oneDNN with the weight in oneDNN's own layout (`to_mkldnn`, done once at load). Over a
whole gemma-3-270m decode step: 0.31 s -> 0.18 s for 16 rows, 0.13 s -> 0.10 s for one, with the
same greedy tokens. (`python -m kositp.cpu_linear` measures it on the machine at hand.)

The cost is memory where a weight is shared: Gemma ties its output projection to the input
embedding, which the lookup still needs in the dense layout, so that matrix is held twice (671 MB
for gemma-3-270m). Untied weights are converted, not copied.

Inference only: the reordered weights take no gradients, and PEFT's LoRA layers are left alone
(merge an adapter before serving it; `kositp export` does).
"""

from __future__ import annotations

import torch
from torch import nn


class OneDNNLinear(nn.Module):
    """`y = x W^T + b` through oneDNN, with W kept in oneDNN's blocked layout."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight.detach().to_mkldnn()
        self.bias = None if linear.bias is None else linear.bias.detach().to_mkldnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if not rows.is_contiguous():
            rows = rows.contiguous()
        y = torch._C._nn.mkldnn_linear(rows.to_mkldnn(), self.weight, self.bias).to_dense()
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def onednn_usable(model: nn.Module) -> bool:
    """fp32 weights on the CPU and a torch built with oneDNN."""
    try:
        p = next(model.parameters())
    except StopIteration:
        return False
    return p.device.type == "cpu" and p.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def use_onednn_linears(model: nn.Module) -> int:
    """Replace every plain `nn.Linear` of an fp32 CPU model by a `OneDNNLinear`; returns how many.

    A no-op (0) on other devices and dtypes. Subclasses of `nn.Linear` (PEFT's LoRA layers,
    quantized layers) are kept as they are.
    """
    if not onednn_usable(model):
        return 0
    modules = list(model.named_modules())
    # Adapter layers (PEFT's have a `base_layer`) read their inner linears' weights: leave them whole.
    adapters = [name + "." for name, m in modules if hasattr(m, "base_layer")]
    replaced = 0
    for parent_name, parent in modules:
        if any((parent_name + ".").startswith(a) for a in adapters):
            continue
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, OneDNNLinear(child))
                replaced += 1
    return replaced


def _measure(rows: tuple[int, ...] = (1, 16, 32), vocab: int = 262_144, hidden: int = 640, repeats: int = 5) -> None:
    """Time an output projection of Gemma 3's shape both ways (the lever's size on this machine)."""
    import time

    torch.manual_seed(0)
    dense = nn.Linear(hidden, vocab, bias=False)
    fast = OneDNNLinear(dense)

    def seconds(layer, x) -> float:
        layer(x)
        start = time.perf_counter()
        for _ in range(repeats):
            layer(x)
        return (time.perf_counter() - start) / repeats

    with torch.inference_mode():
        for n in rows:
            x = torch.randn(n, hidden)
            assert torch.allclose(dense(x), fast(x), rtol=1e-4, atol=1e-4)
            a, b = seconds(dense, x), seconds(fast, x)
            print(f"{n:>3} rows x [{vocab} x {hidden}]: nn.Linear {a * 1000:7.1f} ms, oneDNN {b * 1000:7.1f} ms "
                  f"({a / b:.2f}x), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    _measure()
