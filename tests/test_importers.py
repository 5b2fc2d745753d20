"""Corpus importers: each corpus's published layout, written tiny by the test (generated audio, never a download),
imported into manifests that validate and hold the corpus's texts, speakers, splits, times, entities and references;
a wrong layout is an error naming the path expected and what was found."""

import json

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.importers import LayoutError, import_corpus
from speechkit.data.manifest import check_manifest, read_conversations, read_manifest
from speechkit.pipeline.cli import main


def write_audio(path, seconds, rate=16_000, channels=1, seed=0):
    """Quiet noise; the format follows the suffix (.wav, .flac, .mp3)."""
    noise = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, noise.astype(np.float32), rate)


def imported(name, source, out):
    """Import, and check that every manifest written validates, audio samples included."""
    result = import_corpus(name, source, out, progress=False)
    for manifest in result.manifests:
        if manifest.endswith(".jsonl"):
            assert check_manifest(out / manifest) == [], manifest
    return result


def summary(utterance):
    return utterance.id, utterance.text, utterance.speaker, utterance.split, utterance.language, utterance.domain


# -- LibriSpeech ------------------------------------------------------------------------------------------------

def librispeech(root):
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n"
                                                 "84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n"
                                                 "84-121123-0002 THIS ONE HAS NO AUDIO\n")
    write_audio(chapter / "84-121123-0000.flac", 1.0)
    write_audio(chapter / "84-121123-0001.flac", 2.5)
    other = root / "LibriSpeech" / "test-other" / "1688" / "142285"
    other.mkdir(parents=True)
    (other / "1688-142285.trans.txt").write_text("1688-142285-0000 THERE'S IRON THEY SAY IN ALL OUR BLOOD\n")
    write_audio(other / "1688-142285-0000.flac", 3.0)
    return root


def test_librispeech_one_manifest_per_subset_audio_in_place(tmp_path):
    out = tmp_path / "out"
    result = imported("librispeech", librispeech(tmp_path / "corpus"), out)
    assert result.manifests == ("dev_clean.jsonl", "test_other.jsonl")
    assert (result.utterances, result.conversations, result.hours) == (3, 0, round(6.5 / 3600, 3))
    assert result.skipped == {"audio files missing or unreadable": 1}
    dev = read_manifest(out / "dev_clean.jsonl")
    assert [summary(u) for u in dev] == [
        ("84-121123-0000", "GO DO YOU HEAR", "84", "dev", "en", "general"),
        ("84-121123-0001", "BUT IN LESS THAN FIVE MINUTES", "84", "dev", "en", "general")]
    assert [u.duration for u in dev] == pytest.approx([1.0, 2.5])
    chapter = tmp_path / "corpus" / "LibriSpeech" / "dev-clean" / "84" / "121123"
    assert dev[0].audio.startswith("../") and (out / dev[0].audio).resolve() == chapter / "84-121123-0000.flac"
    assert [summary(u) for u in read_manifest(out / "test_other.jsonl")] == [
        ("1688-142285-0000", "THERE'S IRON THEY SAY IN ALL OUR BLOOD", "1688", "test", "en", "general")]


# -- Common Voice -----------------------------------------------------------------------------------------------

CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents"


def common_voice(root):
    """A release folder: French (48 kHz stereo MP3), and Welsh, a language the kit's tokenizers have no tag for."""
    french = root / "cv-corpus-17.0" / "fr"
    tables = {"train": [("c1", "common_voice_fr_1.mp3", '"Bonjour", dit-il.', 1.2),
                        ("c2", "common_voice_fr_2.mp3", "Il fait beau.", 2.0),
                        ("c2", "common_voice_fr_3.mp3", "  ", 1.0)],
              "dev": [("c1", "common_voice_fr_4.mp3", "À demain.", 1.5)], "test": []}
    for split, rows in tables.items():
        lines = [CV_HEADER] + [f"{client}\t{clip}\tx\t{sentence}\t\t2\t0\t\t\t" for client, clip, sentence, _ in rows]
        (french / f"{split}.tsv").parent.mkdir(parents=True, exist_ok=True)
        (french / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        for index, (_, clip, _, seconds) in enumerate(rows):
            write_audio(french / "clips" / clip, seconds, rate=48_000, channels=2, seed=index)
    (root / "cv-corpus-17.0" / "cy" / "clips").mkdir(parents=True)
    return root / "cv-corpus-17.0"


def test_common_voice_converts_mp3_to_16k_mono_flac_per_language_and_split(tmp_path):
    out = tmp_path / "out"
    result = imported("common-voice", common_voice(tmp_path / "corpus"), out)
    assert result.manifests == ("fr_dev.jsonl", "fr_train.jsonl")
    assert result.skipped == {"without transcript": 1, "language folders without a tokenizer tag (cy)": 1}
    train = read_manifest(out / "fr_train.jsonl")
    assert [summary(u) for u in train] == [("common_voice_fr_1", '"Bonjour", dit-il.', "c1", "train", "fr", "fr"),
                                           ("common_voice_fr_2", "Il fait beau.", "c2", "train", "fr", "fr")]
    assert [u.audio for u in train] == ["audio/common_voice_fr_1.flac", "audio/common_voice_fr_2.flac"]
    assert [u.duration for u in train] == pytest.approx([1.2, 2.0], abs=0.06)  # MP3 pads a frame or two
    info = sf.info(str(out / train[0].audio))
    assert (info.samplerate, info.channels, info.format) == (16_000, 1, "FLAC")
    assert check_manifest(out / "fr_train.jsonl", strict_format=True) == []
    converted = (out / train[0].audio).stat().st_mtime_ns
    imported("common-voice", tmp_path / "corpus" / "cv-corpus-17.0" / "fr", out)  # one language folder; a rerun
    assert (out / train[0].audio).stat().st_mtime_ns == converted  # keeps what it converted


# -- SPGISpeech -------------------------------------------------------------------------------------------------

def spgispeech(root):
    header = "wav_filename|wav_filesize|transcript\n"
    (root / "train").mkdir(parents=True)
    (root / "train.csv").write_text(header + "0a1b/1.wav|160044|Good morning, and welcome to the Q3 2021 call.\n"
                                             "0a1b/2.wav|192044|Revenue rose 12% to $4.5 billion.\n")
    (root / "val.csv").write_text(header + "ffee/1.wav|96044|Thank you, operator.\n")
    write_audio(root / "train" / "0a1b" / "1.wav", 5.0)
    write_audio(root / "train" / "0a1b" / "2.wav", 6.0)
    write_audio(root / "val" / "ffee" / "1.wav", 3.0)
    return root


def test_spgispeech_splits_and_formatted_text(tmp_path):
    out = tmp_path / "out"
    result = imported("spgispeech", spgispeech(tmp_path / "corpus"), out)
    assert result.manifests == ("dev.jsonl", "train.jsonl") and result.skipped == {}
    assert [summary(u) for u in read_manifest(out / "train.jsonl")] == [
        ("0a1b_1", "Good morning, and welcome to the Q3 2021 call.", "0a1b", "train", "en", "finance"),
        ("0a1b_2", "Revenue rose 12% to $4.5 billion.", "0a1b", "train", "en", "finance")]
    dev = read_manifest(out / "dev.jsonl")
    assert [summary(u) for u in dev] == [("ffee_1", "Thank you, operator.", "ffee", "dev", "en", "finance")]
    assert dev[0].duration == pytest.approx(3.0)


# -- AMI --------------------------------------------------------------------------------------------------------

NITE = 'xmlns:nite="http://nite.sourceforge.net/"'


def ami_words(meeting, agent, words):
    """A words file: (token, start, end) triples; '.' and ',' are punctuation, '~' a vocal sound."""
    lines = []
    for index, (token, start, end) in enumerate(words):
        ident = f'nite:id="{meeting}.{agent}.words{index}" starttime="{start}" endtime="{end}"'
        lines.append(f'<vocalsound {ident} type="laugh"/>' if token == "~" else
                     f'<w {ident} punc="true">{token}</w>' if token in ".," else f"<w {ident}>{token}</w>")
    return f'<nite:root nite:id="{meeting}.{agent}.words" {NITE}>\n' + "\n".join(lines) + "\n</nite:root>\n"


def ami_segments(meeting, agent, segments):
    """A segments file: (start, end, first word index, last word index)."""
    body = "".join(f'<segment nite:id="{meeting}.sync.{i}" transcriber_start="{start}" transcriber_end="{end}">'
                   f'<nite:child href="{meeting}.{agent}.words.xml#id({meeting}.{agent}.words{first})..'
                   f'id({meeting}.{agent}.words{last})"/></segment>\n' for i, (start, end, first, last) in
                   enumerate(segments))
    return f'<nite:root nite:id="{meeting}.{agent}.segs" {NITE}>\n{body}</nite:root>\n'


def ami(root):
    """Meeting ES2011a (a dev meeting): A says a sentence, a laugh, then a 34-second stretch of seven 4-second
    sentences; B answers, overlapping A. No Mix-Headset file; ES2002a is annotated but not downloaded."""
    annotations = root / "annotations"
    for folder in ("corpusResources", "words", "segments"):
        (annotations / folder).mkdir(parents=True)
    (annotations / "corpusResources" / "meetings.xml").write_text(
        f'<nite:root nite:id="meetings" {NITE}>\n'
        '<meeting observation="ES2011a"><speaker nxt_agent="A" channel="0" global_name="MEE001"/>'
        '<speaker nxt_agent="B" channel="1" global_name="FEE002"/></meeting>\n'
        '<meeting observation="ES2002a"><speaker nxt_agent="A" channel="0" global_name="MEE006"/></meeting>\n'
        "</nite:root>\n")
    a_words = [("Okay", 0.52, 0.9), (".", 0.9, 0.9), ("~", 1.0, 1.3), ("So", 1.4, 1.6), ("we", 1.6, 1.8),
               ("start", 1.8, 2.3), (".", 2.3, 2.3)]
    for sentence in range(7):  # 5-9 s, 10-14 s, ... 35-39 s
        start = 5.0 + 5 * sentence
        a_words += [("Point", start, start + 1), ("number", start + 1, start + 3),
                    (str(sentence), start + 3, start + 4), (".", start + 4, start + 4)]
    files = {"A": (a_words, [(0.4, 2.5, 0, 6), (1.0, 1.3, 2, 2), (4.9, 39.2, 7, len(a_words) - 1)]),
             "B": ([("Yeah", 2.0, 2.4), (",", 2.4, 2.4), ("sure", 2.5, 3.0), (".", 3.0, 3.0)], [(1.9, 3.1, 0, 3)])}
    for agent, (words, segments) in files.items():
        (annotations / "words" / f"ES2011a.{agent}.words.xml").write_text(ami_words("ES2011a", agent, words))
        (annotations / "segments" / f"ES2011a.{agent}.segments.xml").write_text(
            ami_segments("ES2011a", agent, segments))
    for channel in (0, 1):
        write_audio(root / "amicorpus" / "ES2011a" / "audio" / f"ES2011a.Headset-{channel}.wav", 41.0, seed=channel)
    return root


def test_ami_meeting_is_a_conversation_of_headset_turns_with_references(tmp_path):
    out = tmp_path / "out"
    result = imported("ami", ami(tmp_path / "corpus"), out)
    assert result.manifests == ("conversation_turns_dev.jsonl", "conversations_dev.jsonl",
                                "conversations_dev.seglst.json", "conversations_dev.rttm")
    assert (result.utterances, result.conversations, result.skipped) == (4, 1, {})
    [meeting] = read_conversations(out / "conversations_dev.jsonl")
    assert (meeting.id, meeting.audio, meeting.split, meeting.speakers) == (
        "ES2011a", "audio/ES2011a.Mix-Headset.flac", "dev", ("FEE002", "MEE001"))
    assert meeting.duration == pytest.approx(41.0)
    turns = read_manifest(out / "conversation_turns_dev.jsonl")
    long_text = " ".join(f"Point number {n}." for n in range(6))
    assert [(t.turn, t.speaker, t.offset, t.duration, t.text) for t in turns] == [
        (0, "MEE001", 0.4, 2.1, "Okay. So we start."),
        (1, "FEE002", 1.9, 1.2, "Yeah, sure."),
        (2, "MEE001", 5.0, 29.0, long_text),  # the 34-s segment cut at a sentence end, timed by its words
        (3, "MEE001", 35.0, 4.0, "Point number 6.")]
    headsets = tmp_path / "corpus" / "amicorpus" / "ES2011a" / "audio"
    assert (out / turns[1].audio).resolve() == headsets / "ES2011a.Headset-1.wav"  # each turn from its headset
    assert {t.conversation for t in turns} == {"ES2011a"} and all(t.duration <= 30 for t in turns)
    assert (out / "conversations_dev.rttm").read_text().splitlines()[:2] == [
        "SPEAKER ES2011a 1 0.400 2.100 <NA> <NA> MEE001 <NA> <NA>",
        "SPEAKER ES2011a 1 1.900 1.200 <NA> <NA> FEE002 <NA> <NA>"]
    seglst = json.loads((out / "conversations_dev.seglst.json").read_text())
    assert [(s["session_id"], s["speaker"], s["start_time"], s["words"]) for s in seglst][1] == (
        "ES2011a", "FEE002", 1.9, "Yeah, sure.")
    assert len(seglst) == 4


# -- Earnings-21 and -22 ----------------------------------------------------------------------------------------

ALIGNED_HEADER = "token|speaker|ts|endTs|punctuation|prepunctuation|case|tags|oldTs|oldEndTs|ali_comment"
EARNINGS22_TOKENS = [  # token, speaker, start, end, punctuation, tags
    ("Good", 0, 0.5, 0.8, "", []), ("day", 0, 0.8, 1.1, ",", []), ("welcome", 0, 1.2, 1.6, "", []),
    ("to", 0, 1.6, 1.7, "", []), ("LATAM", 0, 1.8, 2.2, "", ["3:ORG"]), ("Airlines", 0, 2.2, 2.7, ".", ["3:ORG"]),
    ("It", 0, 2.9, 3.0, "", ["7:CONTRACTION"]), ("is", 0, 3.0, 3.1, "", ["7:CONTRACTION"]),
    ("up", 0, 3.1, 3.3, "", []), ("in", 0, "", "", "", []), ("2019", 0, 3.5, 4.0, ".", ["9:YEAR"]),
    ("Thank", 1, 5.0, 5.3, "", []), ("you", 1, 5.3, 5.5, ",", []), ("Carmen", 1, 5.5, 6.0, ".", ["10:PERSON"])]


def earnings22(root):
    lines = [ALIGNED_HEADER] + [f"{token}|{speaker}|{start}|{end}|{mark}||UC|{tags}|||"
                                for token, speaker, start, end, mark, tags in EARNINGS22_TOKENS]
    references = root / "transcripts" / "force_aligned_nlp_references"
    references.mkdir(parents=True)
    (references / "4329526.aligned.nlp").write_text("\n".join(lines) + "\n")
    write_audio(root / "media" / "4329526.mp3", 8.0, rate=44_100, channels=2)
    return root


def test_earnings22_call_becomes_turns_with_entity_spans(tmp_path):
    out = tmp_path / "out"
    result = imported("earnings22", earnings22(tmp_path / "corpus"), out)
    assert result.manifests == ("conversation_turns_test.jsonl", "conversations_test.jsonl",
                                "conversations_test.seglst.json", "conversations_test.rttm")
    [call] = read_conversations(out / "conversations_test.jsonl")
    assert (call.id, call.audio, call.speakers) == ("4329526", "audio/4329526.flac", ("4329526-0", "4329526-1"))
    turns = read_manifest(out / "conversation_turns_test.jsonl")
    assert [summary(t)[1:] for t in turns] == [
        ("Good day, welcome to LATAM Airlines. It is up in 2019.", "4329526-0", "test", "en", "finance"),
        ("Thank you, Carmen.", "4329526-1", "test", "en", "finance")]
    assert [(t.offset, t.duration) for t in turns] == [(0.5, 3.5), (5.0, 1.0)]
    assert [t.entity_texts() for t in turns] == [["LATAM Airlines", "2019"], ["Carmen"]]  # no contraction
    assert [[span.label for span in t.entities] for t in turns] == [["org", "year"], ["person"]]
    assert check_manifest(out / "conversation_turns_test.jsonl", strict_format=True) == []


EARNINGS21_HEADER = "token|speaker|ts|endTs|punctuation|case|tags|wer_tags"
EARNINGS21_TOKENS = [("Good", 0, "", "[]"), ("morning", 0, "", "['4']"), ("welcome", 0, "", "[]"),
                     ("to", 0, "", "[]"), ("Monro", 0, "", "['5']"), ("Inc", 0, ".", "['5']"),
                     ("We'll", 1, "", "['3']"), ("start", 1, ".", "[]")]


def earnings21(root, timed=True):
    """Earnings-21's layout; as Rev publishes it the references have no times (`timed=False`)."""
    lines = [EARNINGS21_HEADER] + [
        f"{token}|{speaker}|{f'{0.5 * i:.1f}' if timed else ''}|{f'{0.5 * i + 0.4:.1f}' if timed else ''}|{mark}|UC|"
        f"[]|{wer_tags}" for i, (token, speaker, mark, wer_tags) in enumerate(EARNINGS21_TOKENS)]
    (root / "transcripts" / "nlp_references").mkdir(parents=True)
    (root / "transcripts" / "wer_tags").mkdir()
    (root / "transcripts" / "nlp_references" / "4320211.nlp").write_text("\n".join(lines) + "\n")
    (root / "transcripts" / "wer_tags" / "4320211.wer_tag.json").write_text(json.dumps(
        {"3": {"entity_type": "CONTRACTION"}, "4": {"entity_type": "TIME"}, "5": {"entity_type": "ORG"}}))
    write_audio(root / "media" / "4320211.mp3", 5.0, rate=24_000)
    return root


def test_earnings21_entities_come_from_the_wer_tag_sidecar(tmp_path):
    out = tmp_path / "out"
    imported("earnings21", earnings21(tmp_path / "corpus"), out)
    turns = read_manifest(out / "conversation_turns_test.jsonl")
    assert [(t.text, t.offset, t.duration) for t in turns] == [("Good morning welcome to Monro Inc.", 0.0, 2.9),
                                                              ("We'll start.", 3.0, 0.9)]
    assert [t.entity_texts() for t in turns] == [["morning", "Monro Inc"], []]
    assert [span.label for span in turns[0].entities] == ["time", "org"]


def test_earnings_without_token_times_is_an_error_that_says_what_is_needed(tmp_path):
    with pytest.raises(LayoutError, match=r"no token times .*/force_aligned_nlp_references/<call>\.aligned\.nlp"):
        import_corpus("earnings21", earnings21(tmp_path / "corpus", timed=False), tmp_path / "out", progress=False)


# -- MLC-SLM ----------------------------------------------------------------------------------------------------

def mlc_slm(root):
    """An English development conversation with a 32-s segment, and a French training one a level deeper."""
    dev = root / "MLC-SLM_Workshop-Development_Set" / "data" / "English" / "American"
    dev.mkdir(parents=True)
    (dev / "0517_001.txt").write_text("0.5\t3.2\tO1\tHi Will, how are you doing?\n2.8\t5.0\tO2\tGood, thanks.\n"
                                      "6.0\t38.0\tO1\tLet me tell you a very long story.\n")
    write_audio(dev / "0517_001.wav", 40.0)
    train = root / "MLC-SLM_Workshop-Training_Set_1" / "data" / "French" / "0001"
    train.mkdir(parents=True)
    (train / "0001_002.txt").write_text("0.2\t2.0\tO1\tBonjour à tous.\n")
    write_audio(train / "0001_002.wav", 6.0)
    return root


def test_mlc_slm_conversations_keep_long_segments_in_the_references_only(tmp_path):
    out = tmp_path / "out"
    result = imported("mlc-slm", mlc_slm(tmp_path / "corpus"), out)
    assert result.skipped == {"longer than 30 s": 1} and result.conversations == 2
    [english] = read_conversations(out / "conversations_dev.jsonl")
    assert (english.id, english.language, english.speakers) == (
        "English-American-0517_001", "en", ("English-American-0517_001-O1", "English-American-0517_001-O2"))
    turns = read_manifest(out / "conversation_turns_dev.jsonl")
    assert [(t.turn, t.offset, t.duration, t.text, t.domain) for t in turns] == [
        (0, 0.5, 2.7, "Hi Will, how are you doing?", "general"), (1, 2.8, 2.2, "Good, thanks.", "general")]
    seglst = json.loads((out / "conversations_dev.seglst.json").read_text())
    assert [s["words"] for s in seglst][-1] == "Let me tell you a very long story."
    assert len((out / "conversations_dev.rttm").read_text().splitlines()) == 3
    [french] = read_manifest(out / "conversation_turns_train.jsonl")
    assert summary(french) == ("French-0001-0001_002-0000", "Bonjour à tous.", "French-0001-0001_002-O1", "train",
                               "fr", "fr")


# -- wrong layouts and the command line -------------------------------------------------------------------------

def empty(root):
    root.mkdir(parents=True)
    return root


def librispeech_without_transcripts(root):
    write_audio(root / "dev-clean" / "84" / "121123" / "84-121123-0000.flac", 1.0)
    return root


def common_voice_without_tables(root):
    write_audio(root / "fr" / "clips" / "common_voice_fr_1.mp3", 1.0)
    return root


def common_voice_with_other_columns(root):
    common_voice_without_tables(root)
    (root / "fr" / "train.tsv").write_text("client\tfile\ttext\nc1\tcommon_voice_fr_1.mp3\tBonjour.\n")
    return root


def spgispeech_without_slices(root):
    empty(root)
    (root / "train.csv").write_text("wav_filename|wav_filesize|transcript\n0a1b/1.wav|1|Hello.\n")
    return root


def mlc_slm_with_a_bad_line(root):
    mlc_slm(root)
    (root / "MLC-SLM_Workshop-Training_Set_1" / "data" / "French" / "0001" / "0001_002.txt").write_text("0.2 2.0\n")
    return root


@pytest.mark.parametrize("name, layout, expected", [
    ("librispeech", empty, r"expected a subset folder \(train-clean-100, .*\) in .*corpus; .*corpus holds nothing"),
    ("librispeech", librispeech_without_transcripts,
     r"expected .*dev-clean/<speaker>/<chapter>/<speaker>-<chapter>\.trans\.txt; .*dev-clean holds 84/"),
    ("common-voice", empty, r"expected .*corpus/clips/ beside train\.tsv"),
    ("common-voice", common_voice_without_tables, r"expected .*fr/train\.tsv, dev\.tsv or test\.tsv; .* holds clips/"),
    ("common-voice", common_voice_with_other_columns,
     r"train\.tsv: expected the columns client_id, path, sentence in its header; found client, file, text"),
    ("ami", ami, None),
    ("ami", empty, r"expected the AMI annotations at .*annotations/corpusResources/meetings\.xml or "),
    ("earnings22", empty, r"expected the calls' audio \(<call>\.mp3\) at .*corpus/media"),
    ("spgispeech", empty, r"expected .*corpus/train\.csv or .*corpus/val\.csv; .*corpus holds nothing"),
    ("spgispeech", spgispeech_without_slices, r"expected the train slices at .*corpus/train or .*spgispeech/train; "
                                              r".*corpus holds train\.csv"),
    ("mlc-slm", empty, r"expected .*MLC-SLM_Workshop-Training_Set_1/data/ or .*Development_Set/data/"),
    ("mlc-slm", mlc_slm_with_a_bad_line, r"0001_002\.txt:1: expected start<TAB>end<TAB>speaker<TAB>text; found "),
])
def test_a_wrong_layout_names_what_was_expected_and_what_was_found(tmp_path, name, layout, expected):
    source = layout(tmp_path / "corpus")
    if expected is None:  # the right layout imports: the cases above fail for their layout, not by accident
        assert import_corpus(name, source, tmp_path / "out", progress=False).utterances
        return
    with pytest.raises(LayoutError, match=expected):
        import_corpus(name, source, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_command_line_import_reports_and_fails_with_one_line(tmp_path, capsys):
    source = librispeech(tmp_path / "corpus")
    assert main(["import", "librispeech", str(source), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("librispeech: 3 utterances (0.00 h), 0 conversations, 2 files in ")
    assert "left out: 1 audio files missing or unreadable" in captured.out
    assert "librispeech dev-clean" in captured.err  # the progress bar
    assert main(["import", "ami", str(source), "--out", str(tmp_path / "ami")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: expected the AMI annotations at ") and error.count("\n") == 1
    assert main(["import", "mlc-slm", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'} is not a folder\n"
