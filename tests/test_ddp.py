"""torchrun with 2 gloo ranks on CPU: equals one process with the same global batch, and resumes."""
import copy

import torch
from safetensors.torch import load_file

from helpers import TINY_POINTS, torchrun, write_config

from ganforge.config import from_dict
from ganforge.training.trainer import train


def test_two_gloo_ranks_match_single_process_and_resume(tmp_path):
    raw = copy.deepcopy(TINY_POINTS)
    raw["train"].update(steps=20, batch_size=32, ckpt_every=10)
    cfg_path = write_config(tmp_path, raw)
    train(from_dict(raw), tmp_path / "single", progress=False)

    ddp = tmp_path / "ddp"
    torchrun(cfg_path, ddp, "train.steps=10")  # stop half way ...
    assert (ddp / "checkpoints" / "ckpt-00000010.pt").exists()
    r = torchrun(cfg_path, ddp)  # ... and resume to 20 steps on 2 ranks
    assert "resuming from" in r.stdout + r.stderr

    a = load_file(str(tmp_path / "single" / "export" / "generator.safetensors"))
    b = load_file(str(ddp / "export" / "generator.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
