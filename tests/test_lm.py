import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from standins import build_bpe_tokenizer

from speechkit.models import lm

WORDS = "apple river stone cloud green seven orange window paper silver garden doctor market yellow".split()


@pytest.fixture(scope="module")
def texts_and_tokenizer():
    rng = np.random.default_rng(0)
    # distinct words in each text, distinct texts: every word is one token, so copying is unambiguous
    texts = list(dict.fromkeys(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 7)), replace=False))
                               for _ in range(400)))
    return texts, build_bpe_tokenizer(texts, 500)


class ContextModel(torch.nn.Module):
    """With `copies`, predicts the token that followed the current token's last earlier occurrence (an induction
    head); elsewhere, and always without `copies`, a uniform distribution."""
    def __init__(self, vocab: int, copies: bool):
        super().__init__()
        self.vocab, self.copies, self.device = vocab, copies, torch.device("cpu")

    def forward(self, input_ids):
        ids = input_ids[0].tolist()
        logits = torch.zeros(1, len(ids), self.vocab)
        for t, token in enumerate(ids):
            earlier = [j for j in range(t) if ids[j] == token]
            if self.copies and earlier:
                logits[0, t, ids[earlier[-1] + 1]] = 100.0
        return SimpleNamespace(logits=logits)


def test_repeat_loss_separates_a_model_that_copies_from_one_that_ignores_context(texts_and_tokenizer):
    texts, tokenizer = texts_and_tokenizer
    vocab = len(tokenizer)
    first, repeated = lm.repeat_loss(ContextModel(vocab, copies=True), tokenizer, texts[:20])
    assert first > 0.5 * math.log(vocab) and repeated < 1e-3
    first, repeated = lm.repeat_loss(ContextModel(vocab, copies=False), tokenizer, texts[:20])
    assert first == pytest.approx(math.log(vocab)) and repeated == pytest.approx(math.log(vocab))
