"""Data stage: raw Korean corpora -> canonical documents -> 22 instruction tasks -> datasets on disk."""
