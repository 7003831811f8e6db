"""`ganforge lab` under load: updates/s, training steps/s while sending updates, and server memory over time.

Starts the real server (`python -m ganforge lab` in a subprocess, on a free 127.0.0.1 port) and drives it over a
real websocket client (the `websockets` package), as the page does: one `config` message with the page's default
settings (ring8, mlp 64 x 3, vanilla, batch 128; the heatmap is always 50 x 50), then `play`. Every frame is received
and parsed as JSON (the browser's drawing is not included: the client only decodes).

1. Rate: for each steps-per-frame value, play for `--seconds`; updates/s = frames received / elapsed, steps/s =
   training steps the frames report / elapsed; also the mean frame size.
2. Memory: play with the page's default steps per frame (5) for `--minutes`, sampling the server's RSS (psutil if
   installed, else VmRSS of /proc/PID/status) every `--every` seconds; prints the table and the least-squares slope
   of RSS (MiB/min), over all samples and over the second half (after warm-up).

    python benchmarks/bench_lab.py [--minutes 10] [--every 30] [--seconds 20] [--spf 1,5,20,200] [--threads 0]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

MIB = 2 ** 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, runs: Path, threads: int) -> subprocess.Popen:
    """`ganforge lab` as a user starts it; returns once GET / answers (or raises with the server's output)."""
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "lab", "--port", str(port), "--runs", str(runs),
                             "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the lab server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the lab server did not answer within 120 s")


def rss_mib(pid: int) -> float:
    """Resident set size of process `pid` in MiB."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return psutil.Process(pid).memory_info().rss / MIB


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


class Client:
    """One websocket connection to the lab: send messages, receive parsed replies."""

    def __init__(self, ws):
        self.ws = ws
        self.bytes = 0

    async def send(self, msg: dict) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self) -> dict:
        text = await self.ws.recv()
        self.bytes += len(text)
        msg = json.loads(text)
        if msg["type"] == "error":
            raise SystemExit(f"the lab answered an error: {msg['message']}")
        return msg

    async def until(self, kind: str) -> dict:
        while True:
            msg = await self.recv()
            if msg["type"] == kind:
                return msg

    async def configure(self, steps_per_frame: int) -> dict:
        await self.send({"type": "config", "config": {"steps_per_frame": steps_per_frame}})
        return await self.until("frame")

    async def pause(self) -> None:
        await self.send({"type": "pause"})
        await self.until("paused")


async def rate(c: Client, spf: int, seconds: float) -> dict:
    """Play for `seconds` at `spf` steps per frame: frames/s, steps/s and the mean frame size."""
    await c.configure(spf)
    await c.send({"type": "play"})
    first = await c.until("frame")  # the clock starts at the first frame of the loop
    t0, step0, frames, nbytes = time.perf_counter(), first["step"], 0, c.bytes
    while time.perf_counter() - t0 < seconds:
        f = await c.until("frame")
        frames += 1
    elapsed = time.perf_counter() - t0
    await c.pause()
    return {"spf": spf, "updates_s": frames / elapsed, "steps_s": (f["step"] - step0) / elapsed,
            "kb_per_frame": (c.bytes - nbytes) / max(frames, 1) / 1024}


async def memory(c: Client, pid: int, minutes: float, every: float) -> list[dict]:
    """Play at the page's default 5 steps per frame for `minutes`, an RSS sample every `every` seconds."""
    await c.configure(5)
    await c.send({"type": "play"})
    f = await c.until("frame")
    t0 = time.perf_counter()
    samples = [{"t": 0.0, "step": f["step"], "rss": rss_mib(pid), "frames": 0}]
    frames, next_at = 0, every
    while True:
        f = await c.until("frame")
        frames += 1
        now = time.perf_counter() - t0
        if now >= next_at:
            samples.append({"t": now, "step": f["step"], "rss": rss_mib(pid), "frames": frames})
            print(f"  {now / 60:5.1f} min  step {f['step']:7d}  RSS {samples[-1]['rss']:7.1f} MiB", flush=True)
            next_at += every
            if now >= minutes * 60:
                break
    await c.pause()
    return samples


def print_rates(rows: list[dict]) -> None:
    print("\nsteps/frame  updates/s  training steps/s  KiB/frame")
    for r in rows:
        print(f"{r['spf']:11d}  {r['updates_s']:9.2f}  {r['steps_s']:16.1f}  {r['kb_per_frame']:9.1f}")


def print_memory(samples: list[dict]) -> None:
    print("\n  min    step   RSS MiB  updates/s  steps/s   (over the preceding interval)")
    for a, b in zip([None, *samples], samples):
        if a is None:
            print(f"{b['t'] / 60:5.1f}  {b['step']:6d}  {b['rss']:8.1f}")
            continue
        dt = b["t"] - a["t"]
        print(f"{b['t'] / 60:5.1f}  {b['step']:6d}  {b['rss']:8.1f}  {(b['frames'] - a['frames']) / dt:9.2f}  "
              f"{(b['step'] - a['step']) / dt:7.1f}")
    ts, rs = [s["t"] / 60 for s in samples], [s["rss"] for s in samples]
    half = len(samples) // 2
    print(f"RSS slope: {slope(ts, rs):+.3f} MiB/min over all samples, {slope(ts[half:], rs[half:]):+.3f} MiB/min "
          f"over the second half; {rs[0]:.1f} -> {rs[-1]:.1f} MiB (max {max(rs):.1f})")


async def run(a, port: int, pid: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        c = Client(ws)
        hello = await c.recv()
        assert hello["type"] == "hello", hello
        f = await c.configure(5)
        print(f"heatmap {f['heatmap']['size']}x{f['heatmap']['size']}, {len(f['real'])} real / {len(f['fake'])} "
              f"generated points, {len(f['arrows'])} arrows, manifold {f['manifold']['rows']}x{f['manifold']['cols']}")
        rows = []
        for spf in [int(v) for v in a.spf.split(",") if v]:
            rows.append(await rate(c, spf, a.seconds))
            print(f"  steps/frame {spf}: {rows[-1]['updates_s']:.2f} updates/s, {rows[-1]['steps_s']:.1f} steps/s",
                  flush=True)
        print_rates(rows)
        if a.minutes > 0:
            print(f"\nmemory: {a.minutes} min of live training at 5 steps/frame, RSS every {a.every:.0f} s")
            print_memory(await memory(c, pid, a.minutes, a.every))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="live training for the memory samples (0: skip)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between RSS samples")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of play per steps-per-frame value")
    p.add_argument("--spf", default="1,5,20,200", help="comma-separated steps per frame to time")
    p.add_argument("--threads", type=int, default=0, help="the server's --threads (0: torch's default)")
    a = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, server --threads {a.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_server(port, Path(tmp) / "runs", a.threads)
        try:
            print(f"server pid {proc.pid} on 127.0.0.1:{port}, RSS at start {rss_mib(proc.pid):.1f} MiB")
            asyncio.run(run(a, port, proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
