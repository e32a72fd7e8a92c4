"""Training stage: SFT and preference alignment with TRL + PEFT (Unsloth on CUDA)."""
