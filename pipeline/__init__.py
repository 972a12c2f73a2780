"""pipeline: specialize a multilingual LLM for Korean by pruning its vocabulary.

Stages (each reads and writes named artifacts, see `pipeline.artifacts`):
corpus -> language filter -> tokenize (Arrow shards) -> count (Polars) -> score -> select
-> prune (tokenizer + model surgery) -> verify -> report.
"""

__version__ = "0.1.0"
