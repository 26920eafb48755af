"""The tiny SFT base, and loading the policy, its reference, adapters and quantization."""
