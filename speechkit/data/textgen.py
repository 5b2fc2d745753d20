"""The text of the embedded benchmark: real sentences for the source domain, entity-rich target domains, other
languages.

- the general (source) domain is real text: Brown corpus sentences (`speechkit.data.corpora`), in disjoint partitions;
- the target domains are templates of clinical dictation and earnings calls whose `{slot}` fields are filled from
  word lists; slots named in UPPER case are named entities (real drug and condition names, real proper names) and
  their character spans are recorded. The names are rare - absent from the source transcripts - the situation of
  ReHear and Ling & Ye, where the ASR has seldom heard the domain's names but an LLM that read the domain's text has;
- fr/de/es/ja/ko are small grammars (no sentence corpus for them ships in a registry package we could find).
Templates are hand-written because no library generates entity-annotated, domain-controlled text offline.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from num2words import num2words

from speechkit.data import corpora
from speechkit.data.manifest import EntitySpan

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Sentence:
    text: str
    entities: tuple[EntitySpan, ...] = ()


@dataclass(frozen=True)
class Domain:
    name: str
    language: str
    description: str
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]

    def sample(self, rng: np.random.Generator) -> Sentence:
        """Fill a random template; entity slots (UPPER case) become spans."""
        template = self.templates[rng.integers(len(self.templates))]
        pieces: list[str] = []
        spans: list[EntitySpan] = []
        cursor = 0
        length = 0
        for match in _SLOT.finditer(template):
            literal = template[cursor:match.start()]
            pieces.append(literal)
            length += len(literal)
            slot = match.group(1)
            value = _fill(slot, self.slots, rng)
            if slot.isupper():
                spans.append(EntitySpan(start=length, end=length + len(value), label=slot.lower()))
            pieces.append(value)
            length += len(value)
            cursor = match.end()
        pieces.append(template[cursor:])
        text = "".join(pieces)
        return Sentence(text=text[0].upper() + text[1:], entities=tuple(spans))

    @property
    def entity_types(self) -> tuple[str, ...]:
        return tuple(sorted(slot for slot in self.slots if slot.isupper()))


def _fill(slot: str, slots: dict[str, tuple[str, ...]], rng: np.random.Generator) -> str:
    if slot == "number":
        return num2words(int(rng.integers(2, 100)))
    if slot == "big_number":
        return num2words(int(rng.integers(2, 1000)))
    choices = slots[slot]
    return choices[rng.integers(len(choices))]


# ----------------------------------------------------------------------------------------------------------------
# Real entity names. Drug and condition names come from a medical dictionary; people and companies are built from
# real proper names (a company name is a surname and a corporate word, the way most are). Only names that never
# occur in the Brown corpus are used: rare for the ASR, and absent from the source domain's transcripts.
_COMPANY_WORDS = ("Holdings", "Systems", "Group", "Labs", "Industries", "Partners", "Capital", "Networks",
                  "Therapeutics", "Energy", "Logistics", "Biosciences", "Semiconductor", "Financial", "Robotics")
_PRODUCT_WORDS = ("Pro", "Cloud", "Max", "One", "Edge", "Link", "Suite", "Pay", "Vision", "Pulse")


def real_names(count: int, rng: np.random.Generator, taken: set[str], kind: str) -> tuple[str, ...]:
    """`count` distinct names of `kind` (DRUG, CONDITION, PERSON, ORG, PRODUCT) from real word lists, none of whose
    words are in `taken` (which is updated)."""
    terms = corpora.medical_terms()
    if kind in terms:
        pool = [t for t in terms[kind] if t not in taken]
    else:
        pool = [n for n in corpora.proper_names() if n.lower() not in taken]
    order = rng.permutation(len(pool))
    names: list[str] = []
    for i in order:
        if len(names) == count:
            break
        word = pool[i]
        if word.lower() in taken:
            continue
        taken.add(word.lower())
        if kind == "ORG":
            word = f"{word} {_COMPANY_WORDS[rng.integers(len(_COMPANY_WORDS))]}"
        elif kind == "PRODUCT":
            word = f"{word} {_PRODUCT_WORDS[rng.integers(len(_PRODUCT_WORDS))]}"
        names.append(word)
    if len(names) < count:
        raise ValueError(f"only {len(names)} {kind} names available, {count} asked")
    return tuple(names)


# ----------------------------------------------------------------------------------------------------------------
# General (source) domain: real sentences of the Brown corpus, split into disjoint partitions by a hash of each
# sentence, so that no test or dev sentence is in any training split or in the LLM's text corpus whatever the sizes.
PARTITION_SHARES = {"test": 4, "dev": 4, "train": 30, "conversations_test": 3, "conversations_dev": 2,
                    "conversations_train": 7, "corpus": 50}  # percent of the corpus


@dataclass(frozen=True)
class SentencePool:
    """A domain of real sentences: `sentence(partition, index)` is the index-th sentence of a partition (seeded order);
    partitions never share a sentence."""
    name: str
    language: str
    description: str
    partitions: dict[str, tuple[str, ...]]

    def sentence(self, partition: str, index: int) -> Sentence:
        sentences = self.partitions[partition]
        if index >= len(sentences):
            raise ValueError(f"{self.name}: partition {partition!r} has {len(sentences)} sentences, asked for "
                             f"number {index + 1}; ask for fewer utterances")
        return Sentence(sentences[index])


def partition_sentences(sentences: Sequence[str], seed: int) -> dict[str, tuple[str, ...]]:
    """Each sentence to one partition by a seeded hash of its text (stable when the corpus grows), seeded order
    within."""
    bounds, total = [], 0
    for name, share in PARTITION_SHARES.items():
        total += share
        bounds.append((total, name))
    assigned: dict[str, list[str]] = {name: [] for name in PARTITION_SHARES}
    for text in sentences:
        bucket = zlib.crc32(f"{seed}:{text}".encode()) % total
        assigned[next(name for bound, name in bounds if bucket < bound)].append(text)
    rng = np.random.default_rng([seed, 104729])
    return {name: tuple(texts[i] for i in rng.permutation(len(texts))) for name, texts in assigned.items()}


# ----------------------------------------------------------------------------------------------------------------
# Target domains: what a clinician dictates, what an earnings call says. Common words shared with the general domain
# keep the acoustic task familiar; the entities (UPPER slots) are what the ASR has never heard.
_MEDICAL_SLOTS = {
    "dose": ("five", "ten", "twenty", "forty", "fifty", "one hundred", "two hundred", "two hundred and fifty",
             "five hundred"),
    "frequency": ("once a day", "twice a day", "every morning", "every eight hours", "at night", "once a week",
                  "with meals"),
    "symptom": ("headache", "fever", "cough", "fatigue", "nausea", "dizziness", "back pain", "rash",
                "shortness of breath", "chest pain", "swelling", "insomnia"),
    "test": ("blood test", "scan", "x ray", "biopsy", "urine sample", "blood pressure check", "ultrasound",
             "heart tracing"),
    "ward": ("cardiology", "oncology", "neurology", "the emergency department", "paediatrics", "radiology",
             "intensive care", "the outpatient clinic"),
}
_MEDICAL_TEMPLATES = (
    "the patient was started on {DRUG} {dose} milligrams {frequency}.",
    "doctor {PERSON} suspects {CONDITION} and ordered a {test}.",
    "please continue {DRUG} and stop {DRUG} because of the {symptom}.",
    "she was referred to {ward} with a history of {CONDITION}.",
    "the {test} was consistent with {CONDITION}.",
    "he reports {symptom} since switching from {DRUG} to {DRUG}.",
    "doctor {PERSON} will review the {test} results on the ward round.",
    "increase {DRUG} to {dose} milligrams {frequency} and recheck in two weeks.",
    "known {CONDITION}, currently managed with {DRUG}.",
    "the {symptom} improved after three days of {DRUG}.",
    "discussed with doctor {PERSON} from {ward}, who agrees with the plan.",
    "no evidence of {CONDITION} on the {test}.",
    "allergic to {DRUG}, which caused a {symptom} last year.",
    "we will refer the patient to doctor {PERSON} for further management of {CONDITION}.",
)

_FINANCE_SLOTS = {
    "metric": ("revenue", "operating margin", "free cash flow", "net income", "gross margin", "earnings per share",
               "subscription revenue", "operating expenses"),
    "direction": ("grew", "fell", "increased", "declined", "rose", "improved"),
    "percent": ("two", "three", "five", "seven", "nine", "twelve", "fifteen", "eighteen", "twenty", "thirty"),
    "quarter": ("the first quarter", "the second quarter", "the third quarter", "the fourth quarter",
                "the full year", "the prior year"),
    "region": ("Europe", "North America", "Asia", "Latin America", "the Middle East", "Africa"),
    "role": ("chief executive", "chief financial officer", "head of sales", "chairman", "head of investor relations"),
}
_FINANCE_TEMPLATES = (
    "{ORG} reported that {metric} {direction} {percent} percent in {quarter}.",
    "our {role}, {PERSON}, will now walk you through the numbers.",
    "demand for {PRODUCT} remained strong in {region}.",
    "we completed the acquisition of {ORG} earlier this month.",
    "{PERSON} from {ORG}, your line is open.",
    "{metric} for {PRODUCT} {direction} by {percent} percent year over year.",
    "we expect {ORG} to contribute to {metric} from {quarter} onwards.",
    "thank you, {PERSON}, and good morning everyone.",
    "the launch of {PRODUCT} in {region} went better than planned.",
    "compared with {ORG}, our {metric} {direction} faster in {quarter}.",
    "{ORG} and {ORG} signed a partnership to distribute {PRODUCT}.",
    "{PERSON} will join {ORG} as {role} next quarter.",
    "we see {PRODUCT} growing {percent} percent in {region}.",
    "the next question comes from {PERSON} at {ORG}.",
)

# ----------------------------------------------------------------------------------------------------------------
# Other languages (MLC-SLM languages espeak-ng speaks). Japanese is written in kana: espeak-ng cannot read kanji.
_LANGUAGES = {
    "fr": ("Everyday French.", (
        "{name} est allé au {place} avec son {relative}.",
        "nous avons acheté du {food} au {place} ce matin.",
        "le {place} est fermé à cause de la {weather}.",
        "mon {relative} aime beaucoup le {food}.",
        "il fait froid aujourd'hui, prends ton {thing}.",
        "{name} a perdu son {thing} dans le {place}.",
        "je voudrais du {food} et un café, s'il vous plaît.",
        "demain, nous irons au {place} en train.",
    ), {
        "name": ("Pierre", "Marie", "Julien", "Claire", "Luc", "Sophie", "Antoine", "Camille", "Hugo", "Léa"),
        "relative": ("frère", "père", "oncle", "cousin", "voisin", "fils", "grand-père", "ami"),
        "place": ("marché", "jardin", "musée", "restaurant", "village", "bureau", "port", "parc"),
        "food": ("pain", "fromage", "poisson", "riz", "chocolat", "miel", "beurre", "gâteau"),
        "weather": ("pluie", "neige", "tempête", "chaleur"),
        "thing": ("manteau", "parapluie", "livre", "vélo", "sac", "chapeau", "téléphone", "stylo"),
    }),
    "de": ("Everyday German.", (
        "{name} ist mit dem {transport} zum {place} gefahren.",
        "wir haben heute {food} auf dem Markt gekauft.",
        "mein {relative} wohnt in der Nähe vom {place}.",
        "das Wetter ist schlecht, nimm deinen {thing} mit.",
        "{name} hat seinen {thing} im {place} vergessen.",
        "morgen gehen wir mit {name} in den {place}.",
        "ich hätte gern {food} und einen Kaffee, bitte.",
        "der {transport} kommt heute leider später.",
    ), {
        "name": ("Anna", "Lukas", "Paul", "Lena", "Felix", "Marie", "Jonas", "Sophie", "Max", "Emma"),
        "relative": ("Bruder", "Vater", "Onkel", "Cousin", "Nachbar", "Sohn", "Großvater", "Freund"),
        "place": ("Garten", "Bahnhof", "Park", "Laden", "Hafen", "Wald", "Zoo", "Supermarkt"),
        "food": ("Brot", "Käse", "Fisch", "Reis", "Kuchen", "Honig", "Äpfel", "Milch"),
        "transport": ("Zug", "Bus", "Wagen", "Taxi"),
        "thing": ("Mantel", "Schirm", "Koffer", "Schlüssel", "Hut", "Rucksack", "Stift", "Ball"),
    }),
    "es": ("Everyday Spanish.", (
        "{name} fue al {place} con su {relative}.",
        "compramos {food} en el mercado esta mañana.",
        "mi {relative} vive cerca del {place}.",
        "hace mucho frío, lleva tu {thing}.",
        "{name} perdió su {thing} en el {place}.",
        "mañana vamos al {place} en tren.",
        "quisiera {food} y un café, por favor.",
        "el {place} está cerrado por la {weather}.",
    ), {
        "name": ("Carlos", "Lucía", "Javier", "Elena", "Pablo", "Marta", "Diego", "Sofía", "Miguel", "Ana"),
        "relative": ("hermano", "padre", "tío", "primo", "vecino", "hijo", "abuelo", "amigo"),
        "place": ("mercado", "jardín", "museo", "restaurante", "pueblo", "parque", "puerto", "hotel"),
        "food": ("pan", "queso", "pescado", "arroz", "chocolate", "miel", "fruta", "pastel"),
        "weather": ("lluvia", "nieve", "tormenta"),
        "thing": ("abrigo", "paraguas", "libro", "sombrero", "bolso", "teléfono", "reloj", "mapa"),
    }),
    "ja": ("Everyday Japanese, in kana.", (
        "{name}さんは {place}に いきました。",
        "きょうは {food}を たべました。",
        "あしたは {place}で あいましょう。",
        "{name}さんの {thing}は どこですか。",
        "わたしは {food}が すきです。",
        "{place}まで でんしゃで いきます。",
        "{thing}を わすれないで ください。",
        "{name}さんと {food}を かいました。",
    ), {
        "name": ("たなか", "すずき", "さとう", "やまだ", "こばやし", "わたなべ", "いとう", "なかむら"),
        "place": ("えき", "がっこう", "こうえん", "びょういん", "としょかん", "スーパー", "レストラン", "うみ"),
        "food": ("すし", "ラーメン", "りんご", "パン", "おちゃ", "カレー", "たまご", "さかな"),
        "thing": ("かさ", "かばん", "ほん", "とけい", "めがね", "かぎ", "ノート", "カメラ"),
    }),
    "ko": ("Everyday Korean.", (
        "{name} 씨는 {place}에 갔어요.",
        "오늘 {food}을 먹었어요.",
        "내일 {place}에서 만나요.",
        "{name} 씨의 {thing}은 어디에 있어요?",
        "저는 {food}을 좋아해요.",
        "{place}까지 버스로 가요.",
        "{thing}을 잊지 마세요.",
        "{name} 씨와 같이 {food}을 샀어요.",
    ), {
        "name": ("민수", "지영", "현우", "수진", "준호", "서연", "동현", "하나"),
        "place": ("학교", "공원", "병원", "도서관", "시장", "식당", "바다", "역"),
        "food": ("김치", "밥", "사과", "빵", "커피", "라면", "떡", "생선"),
        "thing": ("우산", "가방", "책", "시계", "안경", "열쇠", "공책", "카메라"),
    }),
}

MULTILINGUAL = tuple(_LANGUAGES)
TARGET_DOMAINS = ("medical", "finance")
ENTITIES_PER_TYPE = 120


def build_domains(seed: int) -> dict[str, Domain | SentencePool]:
    """Every domain of the benchmark: the general one from the Brown corpus, entity lexicons drawn from real word
    lists by `seed` (independent of the profile's sizes)."""
    rng = np.random.default_rng([seed, 7919])
    brown = corpora.brown_sentences()
    taken = {word.lower().strip(",.;:?!'") for text in brown for word in text.split()}
    medical = dict(_MEDICAL_SLOTS, **{kind: real_names(ENTITIES_PER_TYPE, rng, taken, kind)
                                      for kind in ("DRUG", "CONDITION", "PERSON")})
    finance = dict(_FINANCE_SLOTS, **{kind: real_names(ENTITIES_PER_TYPE, rng, taken, kind)
                                      for kind in ("ORG", "PRODUCT", "PERSON")})
    domains: dict[str, Domain | SentencePool] = {
        "general": SentencePool("general", "en", "Edited American English: news, fiction, essays, science "
                                "(the Brown corpus).", partition_sentences(brown, seed)),
        "medical": Domain("medical", "en", "Clinical dictation: prescriptions, dosages, diagnoses, referrals.",
                          _MEDICAL_TEMPLATES, medical),
        "finance": Domain("finance", "en", "Company earnings calls: results, products, analysts' questions.",
                          _FINANCE_TEMPLATES, finance),
    }
    for language, (description, templates, slots) in _LANGUAGES.items():
        domains[language] = Domain(language, language, description, templates, slots)
    return domains


def entity_lexicon(domain: Domain) -> tuple[str, ...]:
    """All entity strings of a domain (what its context lists are drawn from)."""
    return tuple(name for kind in domain.entity_types for name in domain.slots[kind])
