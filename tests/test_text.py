import pytest

from speechkit.core.text import normalise, normaliser_for, words


def test_english_normaliser_maps_spelling_numbers_and_punctuation():
    assert normalise("The colour is GREY, twenty-five!", "english") == "the color is gray 25"


def test_basic_normaliser_keeps_diacritics_and_drops_punctuation():
    assert words("Mein Großvater wohnt in der Nähe.", "basic") == ["mein", "großvater", "wohnt", "in", "der", "nähe"]


def test_character_normaliser_scores_characters_without_spaces():
    assert words("いとうさんは スーパー。", "characters") == list("いとうさんはスーパー")


def test_languages_pick_their_normaliser():
    assert [normaliser_for(x) for x in ("en", "fr", "ja", "ko", "th")] == [
        "english", "basic", "characters", "characters", "characters"]


def test_unknown_normaliser_is_an_error():
    with pytest.raises(ValueError, match="unknown normaliser 'englsh'"):
        words("hello", "englsh")
