"""`ganforge lab`: GAN Lab in the browser, trained live by ganforge's own Trainer (see docs/lab.md).

After "GAN Lab: Understanding Complex Deep Generative Models using Interactive Visual Experimentation" (Kahng et al.,
2019), for every registered component that can train on 2-D points. Needs the `lab` extra (starlette, uvicorn,
websockets); `create_app()` is the ASGI app, `serve()` runs it.
"""
from __future__ import annotations


def create_app(*args, **kwargs):
    """The lab's Starlette app (imported lazily, so `import ganforge.lab` works without the extra installed)."""
    from .server import create_app as _create

    return _create(*args, **kwargs)
