"""Validation of the `accelerate launch` configs shipped as the `accelerate/*` recipes.

They are accelerate's own format, so accelerate's own loader validates them (unknown keys and
bad enum values raise there); we add the checks that make a typo fail before a multi-GPU launch.
"""

from __future__ import annotations

from pathlib import Path

from kositp.errors import KositpError

KNOWN_DISTRIBUTED = {"NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED"}


def validate(path: str | Path):
    """Load `path` with accelerate's ClusterConfig; raise KositpError with the reason if it is invalid."""
    from accelerate.commands.config.config_args import ClusterConfig

    path = Path(path)
    try:
        config = ClusterConfig.from_yaml_file(str(path))
    except (ValueError, TypeError, KeyError) as exc:
        raise KositpError(f"{path}: invalid accelerate config: {str(exc).splitlines()[0]}") from None
    kind = config.distributed_type.value if hasattr(config.distributed_type, "value") else str(config.distributed_type)
    if kind not in KNOWN_DISTRIBUTED:
        raise KositpError(f"{path}: distributed_type {kind} is not one kositp documents")
    if kind == "DEEPSPEED":
        stage = (config.deepspeed_config or {}).get("zero_stage")
        if stage not in (0, 1, 2, 3):
            raise KositpError(f"{path}: deepspeed_config.zero_stage must be 0-3, got {stage!r}")
    if kind == "FSDP" and not config.fsdp_config:
        raise KositpError(f"{path}: distributed_type FSDP needs an fsdp_config section")
    return config
