"""llama-cpp-python's `Llama` in a process of its own, so its peak memory is its own.

Reads one JSON request per line on stdin and answers one JSON line on stdout:
`{"tokens": [...], "max_tokens": n, "stop": [...]}` → a greedy completion of a token prompt;
`{"messages": [...], "max_tokens": n}` → `create_chat_completion`. Both reuse the longest common
prefix with the previous prompt, as `Llama` does by default. Answers carry the prompt tokens
evaluated: `Llama.generate` evaluates what is left of the prompt in its first `eval` call, then one
generated token per call.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any


def main(model: str, n_ctx: int, threads: int) -> None:
    from llama_cpp import Llama

    llm = Llama(
        model_path=model, n_ctx=n_ctx, n_threads=threads or None, n_threads_batch=threads or None, verbose=False
    )
    calls: list[int] = []
    original = llm.eval

    def counting_eval(tokens: Sequence[int]) -> None:
        calls.append(len(tokens))
        original(tokens)

    llm.eval = counting_eval  # type: ignore[method-assign]
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        calls.clear()
        t0 = time.perf_counter()
        if "messages" in request:
            out: Any = llm.create_chat_completion(
                request["messages"], max_tokens=request["max_tokens"], temperature=0.0
            )
            text, generated = out["choices"][0]["message"]["content"] or "", out["usage"]["completion_tokens"]
        else:
            stop = set(request["stop"])
            pieces: list[int] = []
            for token in llm.generate(request["tokens"], temp=0.0):
                if token in stop:
                    break
                pieces.append(token)
                if len(pieces) == request["max_tokens"]:
                    break
            text, generated = llm.detokenize(pieces).decode(errors="replace"), len(pieces)
        print(
            json.dumps(
                {
                    "tokens": calls[0] if calls else 0,
                    "seconds": time.perf_counter() - t0,
                    "generated": generated,
                    "text": text,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
