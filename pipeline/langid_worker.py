"""fastText language ID in a child process, fed over pipes (``python -m pipeline.langid_worker``).

fastText's C++ call holds the GIL, so in the tokenize stage it would stall the thread that
files batches into shards. `LangidWorker` runs `pipeline.langid.classify` in a separate
process started with ``python -m`` (it never re-imports the caller's main script, unlike
multiprocessing's spawn), so it runs beside the tokenizer. Requests are served one at a time:
length-prefixed pickles in both directions. The child exits when its stdin closes, including
when the parent is killed.

It does not change any result: the child calls the same function with the same arguments.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor


def _read_exact(stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _recv(stream):
    return pickle.loads(_read_exact(stream, int.from_bytes(_read_exact(stream, 8), "little")))


class LangidWorker:
    """``submit(texts) -> Future`` of ``langid.classify(texts, max_chars=..., model_path=...)``."""

    def __init__(self, *, max_chars: int = 0, model_path: str | None = None):
        self.kwargs = {"max_chars": max_chars, "model_path": model_path}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.langid_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pool = ThreadPoolExecutor(max_workers=1)  # one request at a time; pipe I/O frees the GIL

    def submit(self, texts: list[str]) -> Future:
        return self.pool.submit(self._call, texts)

    def _call(self, texts: list[str]):
        _send(self.proc.stdin, (texts, self.kwargs))
        status, value = _recv(self.proc.stdout)
        if status != "ok":
            raise value
        return value

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def serve() -> None:
    import signal

    from . import langid

    # Ctrl-C reaches the whole process group: the parent handles it and closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            texts, kwargs = _recv(stdin)
        except EOFError:
            return
        try:
            _send(stdout, ("ok", langid.classify(texts, **kwargs)))
        except Exception as e:  # noqa: BLE001 - re-raised in the parent
            _send(stdout, ("error", e))


if __name__ == "__main__":
    serve()
