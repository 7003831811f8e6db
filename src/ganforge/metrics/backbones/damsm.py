"""The DAMSM image encoder of a text-conditional run as an evaluation backbone (for R-precision).

AttnGAN ("AttnGAN: Fine-Grained Text to Image Generation with Attentional Generative Adversarial Networks", Xu et al.,
CVPR 2018, Sec. 5) and DF-GAN report R-precision with the pretrained DAMSM encoders: a generated image's vector from
the DAMSM image encoder is compared by cosine similarity with sentence vectors. This backbone is that image encoder,
read from a run trained with `conditioning.text: {name: damsm}` (text/damsm.py): `--weights` names the run's
`export/text_encoder.safetensors` (its `image.*` tensors). Protocol: uint8 images at the run's resolution
(area-resized otherwise) -> model space [-1, 1] -> encoder. Output: `pool`, the image vectors (B, dim), in the space
of the run's sentence vectors.
"""
from __future__ import annotations

import torch

from ...errors import GanforgeError
from ...registries import BACKBONES
from ..weights import module_sha256, read_state_dict
from .base import RANDOM_WEIGHTS, Backbone, seeded_init


@BACKBONES.register("damsm-image")
class DAMSMImageBackbone(Backbone):
    """A damsm run's image encoder (weights: RUN/export/text_encoder.safetensors): image vectors for R-precision."""

    name = "damsm-image"
    outputs = ("pool",)

    def __init__(self, *, weights: str | None = None, device: str = "cpu", resolution: int = 16, dim: int = 64):
        """
        Args:
            weights: the text_encoder.safetensors of an export trained with the `damsm` text encoder; "random": a
                seeded untrained encoder of `resolution` px and width `dim` (tests; meaningless numbers).
            device: where the network runs.
            resolution, dim: the random encoder's input side and vector width (read off the weights otherwise).
        """
        from ...text.damsm import ImageEncoder, image_encoder_from_state, image_encoder_layout

        super().__init__()
        if weights == RANDOM_WEIGHTS:
            self._init_protocol(device=device, resize_mode="area", input_size=resolution, normalization="none")
            with seeded_init(0):
                self.encoder = ImageEncoder((3, resolution, resolution), dim, 8)
            self.feature_dim, self.weights_id = dim, "random-seed0"
            self._finish()
            return
        if weights is None:
            raise GanforgeError("backbone damsm-image: needs --weights RUN/export/text_encoder.safetensors (a run "
                                "trained with conditioning.text: {name: damsm})")
        state = read_state_dict(weights)
        if "image.body.0.weight" not in state:
            raise GanforgeError(f"backbone damsm-image: {weights} holds no DAMSM image encoder (no image.* weights); "
                                f"train with conditioning.text: {{name: damsm}}")
        shape, _ = image_encoder_layout(state)
        if len(shape) != 3:
            raise GanforgeError(f"backbone damsm-image: {weights} encodes {shape[0]}-d points, not images")
        self._init_protocol(device=device, resize_mode="area", input_size=shape[-1], normalization="none")
        self.encoder = image_encoder_from_state(state)
        self.feature_dim = int(self.encoder.out.out_features)
        self.weights_id = module_sha256(self.encoder)
        self._finish()

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": self.encoder(x / 127.5 - 1.0)}  # 0..255 -> model space [-1, 1]
