"""Text conditioning: a word tokenizer, caption encoders (`ganforge.registries.TEXT_ENCODERS`) and an on-disk cache
of caption embeddings.

Each encoder is one module here; `ganforge.registries.load_all()` finds and imports them. Optional pretrained
encoders import their packages only when built, so importing this package needs nothing beyond the default install.
"""
from .base import TextEncoder, TextEncoding
from .cache import cached_embeddings, embedding_cache_key
from .tokenizer import WordTokenizer, tokenize

__all__ = ["TextEncoder", "TextEncoding", "WordTokenizer", "tokenize", "cached_embeddings", "embedding_cache_key"]
