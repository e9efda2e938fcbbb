"""Two stages in two processes (multiprocessing, spawn): the "thinker" puts hidden states
through the SharedMemoryConnector and sends only the small metadata dict through a
multiprocessing.Queue, the way vllm-omni's orchestrator does; the "talker" gets a read-only
numpy view on the shared memory.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/two_stage.py [--requests N]
"""
import argparse
import multiprocessing as mp
import os
import time

import numpy as np

import omniconn

SPEC = {"name": "SharedMemoryConnector", "extra": {"shm_threshold_bytes": 65536}}
TOKENS, HIDDEN = 256, 3584


def thinker(queue, done, requests):
    with omniconn.create_connector(SPEC) as conn:
        for i in range(requests):
            hidden = np.full((TOKENS, HIDDEN), i, dtype=np.float32)
            ok, size, meta = conn.put("0", "1", f"req-{i}", {"hidden_states": hidden,
                                                             "token_ids": np.arange(TOKENS)})
            if not ok:
                raise RuntimeError(meta["error"])
            queue.put((f"req-{i}", meta))
        queue.put(None)
        done.wait(60)  # payloads live in this process: stay until the talker is done


def talker(queue, done):
    received = 0
    with omniconn.create_connector(SPEC) as conn:
        while (item := queue.get(timeout=60)) is not None:
            request_id, meta = item
            obj, size = conn.get("0", "1", request_id, meta, timeout=5)
            hidden = obj["hidden_states"]
            assert hidden.shape == (TOKENS, HIDDEN) and hidden[0, 0] == received
            received += 1
    done.set()
    return received


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    queue, done = ctx.Queue(), ctx.Event()
    producer = ctx.Process(target=thinker, args=(queue, done, args.requests))
    start = time.perf_counter()
    producer.start()
    received = talker(queue, done)
    producer.join(60)
    elapsed = time.perf_counter() - start
    mb = received * TOKENS * HIDDEN * 4 / 1e6
    print(f"{received} requests, {mb:.0f} MB of hidden states in {elapsed:.2f} s "
          f"({mb / elapsed:.0f} MB/s), producer pid {producer.pid}, consumer pid {os.getpid()}")
    return 0 if received == args.requests and producer.exitcode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
