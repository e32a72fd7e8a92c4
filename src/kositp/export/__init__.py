"""Export stage: a training run -> a standalone model directory that vLLM and transformers serve as trained.

`export(cfg)` merges the LoRA adapter into the 16-bit base, writes sharded safetensors, the
tokenizer with the training chat template, a generation_config.json listing every end-of-turn id,
and a model card; then it verifies the merged weights against base+adapter (logits) and,
optionally, vLLM's greedy output against transformers'.
"""

from kositp.export.config import ExportConfig
from kositp.export.run import export

__all__ = ["ExportConfig", "export"]
