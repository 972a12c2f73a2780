"""A small, seeded, RANDOMLY INITIALIZED causal LM that matches a tokenizer's vocabulary.

The pipeline needs a model to prune and verify even where no trained checkpoint can be
downloaded. `build_demo_model` makes one of a real architecture (Mistral by default, also
Llama / Qwen2) whose vocabulary equals ``len(tokenizer)`` and whose bos/eos/pad ids come from
the tokenizer. It is labelled as a demo in its config (``pipeline_demo_model=True`` and
``pipeline_demo_note``), which survives ``save_pretrained``/``from_pretrained``.

What it is not: a language model. Its weights are random, so its outputs are meaningless;
it only exercises the surgery and the equivalence checks (which hold for any weights).
Same seed and arguments give identical weights (and byte-identical safetensors).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DEMO_MODEL_NOTE = (
    "Demo model built by pipeline.demo_model: a real architecture with RANDOM weights "
    "(seeded), sized to the tokenizer's vocabulary. Its outputs are meaningless; it exists "
    "only to exercise vocabulary pruning and the original-vs-pruned equivalence checks."
)

#: model_type of the architectures the demo model is built and tested with.
DEMO_ARCHS = ("mistral", "llama", "qwen2")


def demo_config(tokenizer, *, arch: str = "mistral", hidden_size: int = 64,
                num_layers: int = 2, num_heads: int = 4, num_kv_heads: int = 2,
                intermediate_size: int | None = None, tie_word_embeddings: bool = False,
                max_position_embeddings: int = 2048, seed: int = 0):
    """The config of the demo model (see `build_demo_model`)."""
    from transformers import AutoConfig

    if arch not in DEMO_ARCHS:
        raise ValueError(f"arch must be one of {', '.join(DEMO_ARCHS)}; got {arch!r}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must be divisible by num_heads, and num_heads by "
                         f"num_kv_heads (got {hidden_size}, {num_heads}, {num_kv_heads})")
    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.pipeline_demo_model = True
    config.pipeline_demo_note = DEMO_MODEL_NOTE
    config.pipeline_demo_seed = int(seed)
    return config


def build_demo_model(tokenizer, *, seed: int = 0, arch: str = "mistral", hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, num_kv_heads: int = 2,
                     intermediate_size: int | None = None, tie_word_embeddings: bool = False,
                     dtype: torch.dtype = torch.float32):
    """Build the seeded random demo model for ``tokenizer`` (eval mode, ``dtype``).

    The global torch RNG is left as it was (the seed is applied in a forked RNG state).
    """
    from transformers import AutoModelForCausalLM

    config = demo_config(tokenizer, arch=arch, hidden_size=hidden_size, num_layers=num_layers,
                         num_heads=num_heads, num_kv_heads=num_kv_heads,
                         intermediate_size=intermediate_size,
                         tie_word_embeddings=tie_word_embeddings, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = model.to(dtype)
    model.config.name_or_path = f"pipeline-demo-{arch}-random-seed{seed}"
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


def is_demo_model(model_or_config) -> bool:
    """True for a model (or config) built by this module, also after save/load."""
    cfg = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(cfg, "pipeline_demo_model", False))


def save_demo_model(tokenizer, out_dir: str | os.PathLike, seed: int = 0, *,
                    overwrite: bool = False, **build_kwargs) -> Path:
    """Build the demo model and write it with ``tokenizer`` to ``out_dir`` (``save_pretrained``
    layout, usable as a ``--model`` source directory). Written atomically; returns the path."""
    from .surgery.model import save_pruned_model

    model = build_demo_model(tokenizer, seed=seed, **build_kwargs)
    return save_pruned_model(model, out_dir, tokenizer=tokenizer, overwrite=overwrite)
