"""Fixed input and output buffers for single-image calls (onnxruntime I/O binding).

At batch 1 most of an ``InferenceSession.run`` call is its own bookkeeping: wrapping the input
in a new tensor, allocating the output, converting it back to numpy. A binding made once per
thread, with the input and output living in numpy buffers it owns, skips all of that: the
caller normalizes straight into ``input`` and reads ``output``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import onnxruntime as ort


class SingleImageBinding:
    """One thread's buffers: ``input`` float32 [1, C, H, W] (``flat_input``: the same memory as
    [C*H*W]), ``output`` float32 [1, D]."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_name: str,
        output_name: str,
        input_shape: tuple[int, int, int, int],
        dim: int,
    ) -> None:
        self.input = np.zeros(input_shape, dtype=np.float32)
        self.flat_input = self.input.reshape(-1)
        self.output = np.zeros((1, dim), dtype=np.float32)
        # The tensors view the numpy buffers (no copies); keep them referenced with the binding.
        self._tensors = (ort.OrtValue.ortvalue_from_numpy(self.input), ort.OrtValue.ortvalue_from_numpy(self.output))
        self._binding = session.io_binding()
        self._binding.bind_ortvalue_input(input_name, self._tensors[0])
        self._binding.bind_ortvalue_output(output_name, self._tensors[1])
        self._session = session

    def run(self) -> np.ndarray:
        """Run the network on ``input``; returns ``output`` (overwritten by the next call)."""
        # No RunOptions: onnxruntime 1.32 looks up a graph-capture key in them on every bound run,
        # through a raised and caught exception that costs more than the whole run here.
        self._session.run_with_iobinding(self._binding)
        return self.output


class PerThreadBindings:
    """A ``SingleImageBinding`` per calling thread, made on first use; ``None`` once a binding
    has failed (then callers use the plain ``run`` path for good)."""

    def __init__(self, make: Callable[[], SingleImageBinding], enabled: bool = True) -> None:
        self._make = make
        self._local = threading.local()
        self.enabled = enabled

    def get(self) -> SingleImageBinding | None:
        bound = getattr(self._local, "binding", None)
        if bound is None and self.enabled:
            try:
                bound = self._make()
                bound.run()  # a model that cannot run bound (an odd output shape) fails here, once
            except Exception:
                self.enabled = False
                return None
            self._local.binding = bound
        return bound if self.enabled else None
