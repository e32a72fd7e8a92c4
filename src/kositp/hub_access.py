"""Offline by default: the `kositp` command keeps its processes off the model hub unless asked.

kositp never needs the hub: models are local directories or built locally, data is on disk. Yet
huggingface_hub, transformers, datasets and Unsloth all try the network on their own (hub
look-ups, update checks, Unsloth's usage statistics); where there is no network at all, each waits
for its own time-out before giving up, so a stage can stall for minutes before its first step.
Setting their offline variables makes them fail fast or use local files.

The switch for hub access is `kositp --online ...` or `KOSITP_ONLINE=1`: then kositp leaves every
variable as the user set it, so hub ids download as usual. A variable the user set explicitly
(e.g. `HF_HUB_OFFLINE=0`) is never overwritten. Child processes (training stages, bench runs,
servers) inherit the settings through the environment.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

ONLINE_SWITCH = "KOSITP_ONLINE"

# The value each library reads as "do not touch the network".
OFFLINE_VARIABLES = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub (and through it transformers, datasets, peft, Unsloth)
    "TRANSFORMERS_OFFLINE": "1",  # transformers; Unsloth's has_internet() also checks it
    "HF_DATASETS_OFFLINE": "1",  # datasets
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub's usage pings
    "UNSLOTH_DISABLE_STATISTICS": "1",  # Unsloth: no statistics download on model load (presence counts)
    "UNSLOTH_OFFLINE": "1",  # unsloth_zoo: no llama.cpp download on GGUF export
}

_TRUE = {"1", "true", "yes", "on"}


def online_requested(environ: MutableMapping[str, str] = os.environ) -> bool:
    return environ.get(ONLINE_SWITCH, "").strip().lower() in _TRUE


def configure_hub_access(online: bool = False, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the offline variables in `environ` unless hub access was asked for; returns what it set.

    Call it before huggingface_hub is imported: the hub reads HF_HUB_OFFLINE once, at import.
    """
    if online:
        environ[ONLINE_SWITCH] = "1"  # children of this process stay online too
    if online or online_requested(environ):
        return {}
    applied = {}
    for name, value in OFFLINE_VARIABLES.items():
        if name not in environ:
            environ[name] = applied[name] = value
    return applied
