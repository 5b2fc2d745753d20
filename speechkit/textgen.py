"""Sentence grammars of the embedded benchmark: a general source domain, entity-rich target domains, other languages.

Each domain is a list of templates whose `{slot}` fields are filled from word lists; slots named in UPPER case are
named entities and their character spans are recorded. Entity names are invented from syllables (seeded), so they
are absent from the general-domain transcripts and from any pretrained lexicon - the situation of ReHear and
Ling & Ye, where the ASR has never heard the domain's names but an LLM that read the domain's text has.
Hand-written because no library generates entity-annotated, domain-controlled text offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from num2words import num2words

from speechkit.manifest import EntitySpan

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
# Invented names. Syllable inventories and suffixes give each entity type a recognisable shape (drug names end in
# -mab or -pril, companies in -tech or -ora), as real domain names do.
_ONSETS = ("b", "br", "c", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "qu",
           "r", "s", "st", "t", "tr", "v", "z", "th", "sh", "ch", "x")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "x", "m", "nd", "rt", "st")

_SUFFIXES = {
    "DRUG": ("mab", "nib", "pril", "olol", "statin", "vir", "zole", "tide", "parin", "cillin"),
    "CONDITION": ("osis", "itis", "emia", "opathy", "algia"),
    "ORG": ("tech", "ora", "ix", "gen", "corp", "ium", "ex", "on"),
    "PRODUCT": ("ware", "line", "max", "pay", "link", "cloud"),
    "PERSON": ("son", "berg", "ley", "ford", "wick", "ani", "ova", "ez", "ski", "er"),
}


def invent_names(kind: str, count: int, rng: np.random.Generator, taken: set[str]) -> tuple[str, ...]:
    """`count` distinct capitalised pseudo-words of shape `kind`, none of them in `taken` (which is updated)."""
    names: list[str] = []
    while len(names) < count:
        syllables = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                            for _ in range(int(rng.integers(1, 3))))
        coda = _CODAS[rng.integers(len(_CODAS))]
        suffix = _SUFFIXES[kind][rng.integers(len(_SUFFIXES[kind]))]
        name = (syllables + coda + suffix).capitalize()
        if name.lower() not in taken and 4 <= len(name) <= 14:
            taken.add(name.lower())
            names.append(name)
    return tuple(names)


# ----------------------------------------------------------------------------------------------------------------
# General (source) domain: everyday English with a broad vocabulary.
_GENERAL_SLOTS = {
    "name": ("James", "Mary", "Robert", "Linda", "Michael", "Sarah", "David", "Emma", "Thomas", "Laura", "Daniel",
             "Anna", "Peter", "Lucy", "George", "Helen", "Paul", "Alice", "Mark", "Grace", "Kevin", "Rachel",
             "Steven", "Julia", "Brian", "Nancy", "Edward", "Karen", "Frank", "Susan"),
    "relative": ("mother", "father", "sister", "brother", "aunt", "uncle", "cousin", "grandmother", "neighbour",
                 "friend", "teacher", "colleague", "son", "daughter", "wife", "husband"),
    "place": ("market", "library", "station", "park", "beach", "office", "school", "garden", "kitchen", "museum",
              "hospital", "bakery", "cinema", "airport", "harbour", "village", "city centre", "bus stop",
              "post office", "farm", "hotel", "restaurant", "church", "bridge", "river"),
    "thing": ("umbrella", "bicycle", "newspaper", "basket", "ticket", "camera", "letter", "blanket", "lamp",
              "kettle", "guitar", "jacket", "wallet", "notebook", "pencil", "mirror", "clock", "suitcase", "map",
              "key", "phone", "chair", "window", "door", "bottle", "box", "coat", "ball", "book", "picture"),
    "food": ("bread", "apples", "cheese", "soup", "rice", "oranges", "coffee", "tea", "cake", "potatoes", "eggs",
             "fish", "chicken", "carrots", "milk", "butter", "honey", "pasta", "salad", "biscuits", "tomatoes",
             "onions", "grapes", "beans", "pie"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "the weekend",
            "tomorrow", "yesterday", "this morning", "tonight", "last week", "next month"),
    "time": ("early", "late", "before lunch", "after dinner", "at noon", "in the evening", "at midnight",
             "around ten", "at dawn", "on time"),
    "adjective": ("small", "large", "old", "new", "bright", "quiet", "heavy", "cheap", "warm", "cold", "clean",
                  "broken", "green", "blue", "red", "yellow", "wooden", "round", "strange", "lovely", "busy",
                  "empty", "famous", "modern", "simple", "dark", "soft", "loud", "tidy", "narrow"),
    "verb_past": ("found", "bought", "lost", "carried", "painted", "cleaned", "borrowed", "sold", "fixed",
                  "opened", "moved", "dropped", "wrapped", "washed", "checked", "ordered", "packed", "forgot",
                  "noticed", "returned"),
    "activity": ("reading", "cooking", "walking", "swimming", "singing", "running", "drawing", "fishing",
                 "gardening", "dancing", "writing", "sleeping", "travelling", "studying", "shopping", "cycling",
                 "knitting", "climbing", "sailing", "baking"),
    "weather": ("rain", "snow", "wind", "sunshine", "fog", "thunder", "frost", "clouds", "heat", "storm"),
    "animal": ("dog", "cat", "horse", "rabbit", "duck", "goat", "cow", "sheep", "fox", "owl", "mouse", "pig",
               "bird", "bear", "frog"),
    "feeling": ("happy", "tired", "surprised", "nervous", "proud", "hungry", "calm", "worried", "excited",
                "bored", "grateful", "sleepy", "curious", "lonely", "cheerful"),
    "transport": ("train", "bus", "car", "boat", "plane", "taxi", "tram", "ferry", "bike", "van"),
}

_GENERAL_TEMPLATES = (
    "my {relative} {verb_past} a {adjective} {thing} at the {place} on {day}.",
    "{name} went to the {place} {time} to buy some {food}.",
    "we took the {transport} to the {place} because of the {weather}.",
    "there was a {adjective} {animal} near the {place} {day}.",
    "{name} likes {activity} more than {activity} in the summer.",
    "please bring the {adjective} {thing} to the {place} before {day}.",
    "the {weather} kept everyone at home on {day}, so we stayed in the {place}.",
    "I {verb_past} my {thing} on the {transport} and felt very {feeling}.",
    "{name} and {name} spent {day} {activity} by the {place}.",
    "could you ask your {relative} whether the {place} is open {time}?",
    "we need {number} more {food} and a {adjective} {thing} for the party.",
    "the {adjective} {thing} belongs to my {relative}, not to {name}.",
    "after the {weather} stopped, the children went {activity} in the {place}.",
    "{name} {verb_past} the {thing} and then made some {food}.",
    "it takes {number} minutes to reach the {place} by {transport}.",
    "my {relative} was {feeling} when the {transport} arrived {time}.",
    "do you remember the {adjective} {place} where we saw the {animal}?",
    "{name} told me that the {food} at the {place} is {adjective} and {adjective}.",
    "on {day} the {place} was {adjective} and full of {animal}s.",
    "I would rather go {activity} than sit in the {place} all day.",
    "the {transport} to the {place} leaves {time} every {day}.",
    "her {relative} keeps a {adjective} {thing} next to the {thing}.",
    "{name} felt {feeling} after {activity} for {number} hours.",
    "we {verb_past} {number} {food} for the {place} and a {thing} for {name}.",
    "there is a {adjective} {animal} sleeping under the {thing}.",
    "the {weather} is expected {day}, so take a {thing} with you.",
    "my {relative} and I enjoy {activity} near the {place} {time}.",
    "{name} asked whether the {thing} was {adjective} or {adjective}.",
)

# Conversational turns: short, first and second person, as people speak to each other.
_DIALOGUE_TEMPLATES = (
    "have you seen my {thing}? I left it in the {place}.",
    "yes, I think {name} {verb_past} it {day}.",
    "shall we go {activity} {day}?",
    "I am not sure, the {weather} might be bad.",
    "that sounds {adjective} to me.",
    "really? I thought the {place} was closed {time}.",
    "could you pick up some {food} on your way home?",
    "no problem, I will take the {transport}.",
    "how was your {relative}'s trip to the {place}?",
    "it was {adjective}, but they felt a bit {feeling}.",
    "let us meet at the {place} {time}.",
    "okay, see you there.",
    "did {name} call you about the {thing}?",
    "I am {feeling} because the {transport} was late again.",
    "we still need {number} {food} for {day}.",
    "I can bring a {adjective} {thing} if that helps.",
)

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


def build_domains(seed: int) -> dict[str, Domain]:
    """Every domain of the benchmark, entity lexicons invented from `seed` (independent of the profile's sizes)."""
    rng = np.random.default_rng([seed, 7919])
    taken = {word.lower() for words in _GENERAL_SLOTS.values() for phrase in words for word in phrase.split()}
    medical = dict(_MEDICAL_SLOTS, **{kind: invent_names(kind, ENTITIES_PER_TYPE, rng, taken)
                                      for kind in ("DRUG", "CONDITION", "PERSON")})
    finance = dict(_FINANCE_SLOTS, **{kind: invent_names(kind, ENTITIES_PER_TYPE, rng, taken)
                                      for kind in ("ORG", "PRODUCT", "PERSON")})
    domains = {
        "general": Domain("general", "en", "Everyday English narration and conversation.",
                          _GENERAL_TEMPLATES + _DIALOGUE_TEMPLATES, _GENERAL_SLOTS),
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
