"""Faster fp32 linear layers for CPU inference: oneDNN with the weights reordered once.

`nn.Linear` on CPU calls MKL's sgemm, which does poorly for the shapes of batched decoding (a few
to a few dozen rows against a large weight): on gemma-3-270m most of a batched decode step went to
the tied 262k x 640 output projection. oneDNN with the weight held in its own blocked layout
(`to_mkldnn`, done once at load) is faster there, with the same greedy tokens; `python -m
kositp.cpu_linear` measures it on the machine at hand and docs/serving.md has the figures.

Kept rather than `torch.utils.mkldnn.MkldnnLinear`, which makes the same oneDNN call: that one is
built on TorchScript decorators deprecated in torch 2.13 and measured no faster (docs/serving.md).

The cost is memory where a weight is shared: Gemma ties its output projection to the input
embedding, which the lookup still needs in the dense layout, so that matrix is held twice.
Untied weights are converted, not copied.

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


# gemma-3-270m's linear shapes (in, out): attention q/kv/o, MLP gate-up/down, the tied output projection
GEMMA_270M_SHAPES = ((640, 1024), (640, 256), (1024, 640), (640, 2048), (2048, 640), (640, 262_144))


def measure(rows: tuple[int, ...] = (1, 16), shapes=GEMMA_270M_SHAPES, rounds: int = 7) -> list[dict]:
    """Seconds per call of `nn.Linear` (MKL), `OneDNNLinear` and torch's `MkldnnLinear`, fp32.

    The three alternate within each round (so a busy machine slows them alike); medians over rounds.
    """
    import statistics
    import time
    import warnings

    with warnings.catch_warnings():  # torch.utils.mkldnn is built on deprecated TorchScript decorators
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.utils.mkldnn import MkldnnLinear

    torch.manual_seed(0)
    results = []
    with torch.inference_mode():
        for n_in, n_out in shapes:
            dense = nn.Linear(n_in, n_out, bias=False)
            layers = {"nn.Linear": dense, "OneDNNLinear": OneDNNLinear(dense),
                      "MkldnnLinear": MkldnnLinear(dense, torch.float)}
            for n in rows:
                x = torch.randn(1, n, n_in)  # (batch, positions, features), as a decoder calls it
                for layer in layers.values():
                    torch.testing.assert_close(layer(x), dense(x), rtol=1e-4, atol=1e-4)
                calls = max(3, min(1000, int(1e8 / (n_in * n_out * n))))  # about the same work per timing
                times: dict[str, list[float]] = {name: [] for name in layers}
                for r in range(rounds):
                    for name in (list(layers) if r % 2 == 0 else list(layers)[::-1]):
                        start = time.perf_counter()
                        for _ in range(calls):
                            layers[name](x)
                        times[name].append((time.perf_counter() - start) / calls)
                results.append({"shape": [n_in, n_out], "rows": n} |
                               {name: statistics.median(t) for name, t in times.items()})
    return results


if __name__ == "__main__":  # python -m kositp.cpu_linear: the three linears on gemma-3-270m's shapes, here
    print(f"fp32, {torch.get_num_threads()} threads, torch {torch.__version__}; microseconds per call (median)")
    print("| in -> out | rows | nn.Linear | OneDNNLinear | MkldnnLinear | OneDNN / Mkldnn |\n|---|---|---|---|---|---|")
    for r in measure():
        print(f"| {r['shape'][0]} -> {r['shape'][1]} | {r['rows']} | {r['nn.Linear'] * 1e6:,.0f} | "
              f"{r['OneDNNLinear'] * 1e6:,.0f} | {r['MkldnnLinear'] * 1e6:,.0f} | "
              f"{r['OneDNNLinear'] / r['MkldnnLinear']:.2f} |", flush=True)
