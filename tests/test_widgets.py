"""The demo's widgets, driven headlessly: set the controls' values, check what the panels show."""

import pytest

from speechkit.data.manifest import Hypothesis, read_manifest
from speechkit.speech_hands.demo import TABLE_ROWS, RoutingBrowser
from speechkit.speech_hands.routing import Decision
from speechkit.ui.display import highlight_errors
from speechkit.ui.widgets import AudioBrowser


@pytest.fixture(scope="module")
def utterances(smoke_benchmark):
    root, _ = smoke_benchmark
    return root, read_manifest(root / "source_test.jsonl") + read_manifest(root / "medical_test.jsonl")


def decisions_for(utterances):
    """Alternating tokens; routing right on every other utterance."""
    decisions = []
    for i, u in enumerate(utterances):
        action = ("internal", "external", "rewrite")[i % 3]
        label = action if i % 2 == 0 else "rewrite"
        external = (Hypothesis(u.text.lower(), -1.0), Hypothesis("something else", -2.0))
        decisions.append(Decision(u.id, "test", u.domain, u.language, u.text,
                                  f"{u.text} extra", external, label, action, 0.5 + 0.01 * i, "a rewrite",
                                  {"internal": f"{u.text} extra", "external": external[0].text,
                                   "rewrite": "a rewrite"}[action]))
    return decisions


def rows(browser):
    return browser.table.value.count('class="routing-row ')


def test_filters_change_the_rows(utterances):
    root, chosen = utterances
    decisions = decisions_for(chosen)
    browser = RoutingBrowser(decisions, chosen, root)
    assert rows(browser) == min(len(decisions), TABLE_ROWS)
    browser.token.value = "<external>"
    assert browser.filtered() == [d for d in decisions if d.action == "external"]
    assert rows(browser) == len(browser.filtered()) > 0 and "&lt;internal&gt; (" not in browser.table.value
    browser.correct.value = "wrong"
    assert all(d.action == "external" and d.label != d.action for d in browser.filtered())
    browser.token.value, browser.correct.value = "all", "all"
    browser.domain.value = "medical"
    assert {d.domain for d in browser.filtered()} == {"medical"} and rows(browser) == len(browser.filtered())
    assert sorted(value for _, value in browser.choice.options) == sorted(d.id for d in browser.filtered())


def test_wrong_decisions_lead_the_table_most_confident_first_and_are_coloured(utterances):
    root, chosen = utterances
    decisions = decisions_for(chosen)
    browser = RoutingBrowser(decisions, chosen, root)
    wrong = sorted((d for d in decisions if not d.right), key=lambda d: -d.action_probability)
    right = sorted((d for d in decisions if d.right), key=lambda d: -d.action_probability)
    assert [value for _, value in browser.choice.options] == [d.id for d in wrong + right]
    assert browser.choice.value == wrong[0].id and "wrong" in browser.details.value  # the demo opens on a mistake
    table = browser.table.value
    assert table.index(wrong[0].id) < table.index(right[0].id) or right[0].id not in table
    assert table.count('class="routing-row wrong" style="background:#fce8e6"') == min(len(wrong), TABLE_ROWS)


def test_the_chosen_utterance_shows_everything(utterances):
    root, chosen = utterances
    decisions = decisions_for(chosen)
    browser = RoutingBrowser(decisions, chosen, root)
    browser.choice.value = decisions[1].id
    details, decision = browser.details.value, decisions[1]
    assert decision.reference in details
    assert "&lt;external&gt; with probability 0.51" in details and "label &lt;rewrite&gt;: wrong" in details
    assert "something else" in details  # the N-best's second hypothesis
    assert "WER 0%" in details  # the external top equals the reference after normalisation: output WER 0
    audio = browser.player.children[0]
    assert audio.format == "wav" and audio.value[:4] == b"RIFF"


def test_no_match_says_so(utterances):
    root, chosen = utterances
    decisions = [d for d in decisions_for(chosen) if d.action != "rewrite"]
    browser = RoutingBrowser(decisions, chosen, root)
    browser.token.value = "<rewrite>"
    assert browser.filtered() == [] and rows(browser) == 0 and browser.choice.options == ()
    assert "no utterance matches" in browser.details.value and browser.player.children == ()
    with pytest.raises(ValueError, match="no routing decisions"):
        RoutingBrowser([], chosen, root)
    with pytest.raises(ValueError, match="not in the manifests"):
        RoutingBrowser(decisions, chosen[:1], root)


def test_audio_browser_filters_and_shows_hypotheses(utterances):
    root, chosen = utterances
    browser = AudioBrowser(chosen, root, {"whisper": {chosen[0].id: "a wrong guess"}})
    assert len(browser.choice.options) == len(chosen)
    word = chosen[0].text.split()[1].lower()
    browser.search.value = word
    assert all(word in u.text.lower() for u in browser.matching()) and browser.matching()
    browser.choice.value = chosen[0].id
    assert chosen[0].text in browser.details.value and "whisper" in browser.details.value
    assert browser.player.children[0].value[:4] == b"RIFF"
    browser.search.value = "no transcript has this"
    assert browser.choice.options == () and "no utterance matches" in browser.details.value


def test_audio_browser_marks_entities_and_counts_their_errors(utterances):
    root, chosen = utterances
    medical = next(u for u in chosen if u.entities)
    entity = medical.text[medical.entities[0].start:medical.entities[0].end]
    without = medical.text.replace(entity, "something")
    browser = AudioBrowser([medical], root, {"right": {medical.id: medical.text}, "wrong": {medical.id: without}})
    browser.choice.value = medical.id
    shown = browser.details.value
    assert f">{entity}</mark>" in shown and shown.count("<mark") == len(medical.entities)
    words = sum(len(medical.text[e.start:e.end].split()) for e in medical.entities)
    assert f"entity words: 0 of {words} wrong" in shown
    assert f"entity words: {len(entity.split())} of {words} wrong" in shown


def test_error_highlighting_marks_each_kind_of_error():
    shown = highlight_errors("the cat sat on the mat", "the bat sat on mat", "en")
    assert 'title="reference: cat">bat</span>' in shown  # substitution
    assert '<s style="color:#888">the</s>' in shown     # deletion
    assert "<u" in highlight_errors("a b", "a b c", "en")  # insertion
    assert highlight_errors("a b", "A, b.", "en") == "a b"  # scored after normalisation: no error
