"""Attacks on fingerprinted copies of a model, for the robustness suite and the trace tests.

Every attack takes one or more copies as {tensor name: float32 array} (transformers names, as
the release is published) and returns the leaked copy the same way; `formats` writes it as
safetensors, GGUF (llama.cpp names and rotary order, optionally quantised) or a PyTorch
checkpoint. Model-level attacks (fine-tuning) live in `finetune` and need torch.
"""
