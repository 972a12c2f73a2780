"""Vocabulary surgery: prune a tokenizer (`tokenizer`) and a model (`model`) to a kept token set."""
