"""Long-running use: memory stays flat over many calls, errors included."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def test_rss_stays_flat_over_100k_calls() -> None:
    # A fresh interpreter, so that only these calls move its memory. Current RSS (not the
    # peak) after a warm-up, then after 1e5 more calls of every kind, half of them raising.
    code = textwrap.dedent(
        """
        import numpy as np
        import bcers

        def rss_kib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * (__import__("os").sysconf("SC_PAGE_SIZE") // 1024)

        rng = np.random.default_rng(0)
        x = rng.random(257, dtype=np.float32)
        y = rng.random(257, dtype=np.float32)
        w = rng.random(257, dtype=np.float32)
        bad = x.copy(); bad[3] = 2.0
        loss_fn = bcers.BCEWithLogitsLoss(pos_weight=np.float32(2))

        def one_round(i):
            bcers.binary_cross_entropy(x, y)
            bcers.binary_cross_entropy(x, y, w, reduction="none")
            bcers.binary_cross_entropy_value_and_grad(x, y, reduction="sum")
            loss_fn.value_and_grad(x, y)
            bcers.binary_cross_entropy_with_logits_backward(None, x, y, reduction="none")
            for call in (
                lambda: bcers.binary_cross_entropy(bad, y),
                lambda: bcers.binary_cross_entropy(x, y[:3]),
                lambda: bcers.binary_cross_entropy(x, y, reduction="avg"),
                lambda: bcers.binary_cross_entropy(x.astype(complex), y),
                lambda: bcers.binary_cross_entropy_backward(np.ones(2, np.float32), x, y),
            ):
                try:
                    call()
                except (ValueError, TypeError):
                    pass
                else:
                    raise AssertionError("expected an error")

        for i in range(2000):
            one_round(i)
        before = rss_kib()
        for i in range(10000):  # 10 calls a round: 1e5 calls, half of them raising
            one_round(i)
        after = rss_kib()
        print(before, after)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    before, after = (int(v) for v in proc.stdout.split())
    # A leak of even 16 bytes a call would be 1.6 MB; allocator noise stays well below 1 MiB.
    assert after - before < 1024, f"RSS grew from {before} KiB to {after} KiB"
