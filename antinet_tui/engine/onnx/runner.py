"""The decoder graph run by ONNX Runtime: one session run per step, KV cache in place.

IO binding keeps every buffer ours and fixed: the KV cache (one numpy array per layer
and kind, on 4 KiB pages that become resident as positions fill, bound as both
`past_*` and `present_*`), the logits, and the small position inputs, which a decode
step rewrites in place. So a step allocates nothing and runs no per-layer Python.

A session's intra-op thread count is fixed when it is created, so a mode with another
thread count replaces the session with one on the same model file (~0.3 s; the built
graph and our buffers are reused). Only one session lives at a time: each holds its own
prepacked weights (~130 MB for SmolLM2), and two would break the memory budget.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from antinet_tui.engine.gguf_model import ModelConfig
from antinet_tui.engine.memory import small_page_buffer


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # spinning workers answer the next kernel at once: off, 2-thread decode fell ~30 %
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.log_severity_level = 3
    return options


class OnnxForward:
    """A ForwardModel over an ONNX decoder file (see graph.py for its inputs/outputs)."""

    def __init__(self, model_path: Path, cfg: ModelConfig, n_ctx: int, threads: int = 1):
        import onnxruntime as ort

        self._ort = ort
        self.model_path = model_path
        self.cfg = cfg
        self.n_ctx = n_ctx
        self.length = 0
        # onnxruntime ships no type information: its session and bindings are Any
        self._session: Any = None
        self._prefill_binding: Any = None
        self._step_binding: Any = None
        shape = (1, cfg.n_kv_heads, n_ctx, cfg.head_dim)
        nbytes = int(np.prod(shape)) * 4
        self._kv = [small_page_buffer(nbytes).view(np.float32).reshape(shape)
                    for _ in range(2 * cfg.n_layers)]
        self._kv_values = [ort.OrtValue.ortvalue_from_numpy(a) for a in self._kv]
        self._logits = np.zeros((1, cfg.vocab_size), dtype=np.float32)
        self._logits_value = ort.OrtValue.ortvalue_from_numpy(self._logits)
        # decode-step inputs, rewritten in place before each run
        self._token = np.zeros((1, 1), dtype=np.int64)
        self._seqlens = np.zeros(1, dtype=np.int32)
        self._total = np.zeros((), dtype=np.int32)
        self._step_values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (self._token, self._seqlens, self._total)]
        self.threads = 0
        self.use_threads(threads)

    # --- sessions ------------------------------------------------------------------

    def use_threads(self, threads: int) -> int:
        """Run with a session of `threads` intra-op threads; returns the count it reports."""
        if self._session is None or threads != self.threads:
            self._session = self._prefill_binding = self._step_binding = None  # freed before the next is built
            session = self._ort.InferenceSession(str(self.model_path), sess_options=session_options(threads),
                                                 providers=["CPUExecutionProvider"])
            self._prefill_binding, self._step_binding = self._bind(session)
            self._session = session
            self.threads = int(session.get_session_options().intra_op_num_threads)
        return self.threads

    def _bind(self, session) -> tuple:
        """IO bindings for prefill and decode steps: our buffers, bound once."""
        step = session.io_binding()
        for name, value in zip(("input_ids", "seqlens_k", "total_sequence_length"), self._step_values):
            step.bind_ortvalue_input(name, value)
        prefill = session.io_binding()
        for binding in (prefill, step):
            binding.bind_ortvalue_output("logits", self._logits_value)
            for i in range(self.cfg.n_layers):
                for j, kind in enumerate(("key", "value")):
                    value = self._kv_values[2 * i + j]
                    binding.bind_ortvalue_input(f"past_{kind}.{i}", value)
                    binding.bind_ortvalue_output(f"present_{kind}.{i}", value)
        return prefill, step

    # --- ForwardModel --------------------------------------------------------------

    def prefill(self, ids: Sequence[int], cancel: threading.Event) -> np.ndarray | None:
        if cancel.is_set():
            return None
        n = len(ids)
        self._check_room(0, n)
        binding = self._prefill_binding
        binding.bind_cpu_input("input_ids", np.asarray(ids, dtype=np.int64).reshape(1, n))
        binding.bind_cpu_input("seqlens_k", np.array([n - 1], dtype=np.int32))
        binding.bind_cpu_input("total_sequence_length", np.array(n, dtype=np.int32))
        self._session.run_with_iobinding(binding)
        self.length = n
        return self._logits[0]

    def step(self, token: int) -> np.ndarray:
        pos = self.length
        self._check_room(pos, 1)
        self._token[0, 0] = token
        self._seqlens[0] = pos
        self._total[()] = pos + 1
        self._session.run_with_iobinding(self._step_binding)
        self.length = pos + 1
        return self._logits[0]

    def _check_room(self, pos: int, n: int) -> None:
        if pos + n > self.n_ctx:
            raise ValueError(f"{pos} + {n} tokens exceed the context of {self.n_ctx}")
