"""Question writing for the model-free generator: a question for an answer sentence.

Each rule reads one prose sentence (sentences.py) and writes a question it answers:

- what:  "X is a/an/the Y"              -> "What is X?"
         "X is called Y"                -> "What is X called?"
         "X contains/includes/... Y"    -> "What does X contain?"
         "X is strong and ..."          -> "What is X like?"
- which: "X is the largest Y"           -> "Which is the largest Y?"
         "X eat Y such as A, B"         -> "Which Y do X eat?"
- why:   "A because/due to/since/so that/in order to B", "To B, A"
                                        -> "Why <A as a question>?" ("Why is it that A?")
- how:   "X is used to Y"               -> "How is X used?"
         "A by doing/using/through B"   -> "How <A as a question>?"
         "To do B, do C:" + list        -> "How do you do B?"
- when:  a sentence with a year         -> "When did X do Y?" (the date removed)
- who:   "Name invented/founded/... Y"  -> "Who invented Y?"; also "Y was invented by Name"
- explain (fallback): "Explain/Describe <subject or key phrase> in the context of
         <section (document)>."
An opening phrase is kept ("In 1961, who developed ...?"); a connective ("However,")
and a slide label ("Education: ...") are dropped.

Turning a clause into a question ("ducks feed on land" -> "do ducks feed on land")
uses auxiliary inversion or do-support with a small verb lexicon; a sentence whose
subject or verb is not recognised gets the "explain" question instead of a wrong one.
Questions never refer to "the passage" or "the text": they must stand alone, so they
carry the sentence's own subject or the section heading as context.

Template variants are picked by a CRC of the sentence, so the same sentence always
gets the same question. Bump MODEL_FREE_TEMPLATE_VERSION (model_free.py) whenever a
rule or template changes.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from synth_assets.core.text import STOPWORDS
from synth_assets.generation.sentences import (
    ANAPHORIC,
    CLOSERS,
    OPENERS,
    PUNCT,
    Unit,
    bare_word,
    is_latin_prose,
    is_prose,
    normalise,
)

MAX_QUESTION_CHARS = 220
# Questions that only make sense next to their source; a later filter rejects them.
BANNED_IN_QUESTIONS = re.compile(
    r"\b(the passage|the text|the document|above|according to|the excerpt)\b", re.I
)

# ---------------------------------------------------------------------------
# Small word lists (lowercase)
# ---------------------------------------------------------------------------

_DETERMINERS = frozenset(
    "a an the some several many most all each every both few various numerous certain "
    "other another any no one two three four five".split()
)
_AUXILIARIES = frozenset(
    "is are was were can could will would should may might must shall do does did".split()
)
_PERFECT = frozenset({"has", "have", "had"})
_ADVERBS = frozenset(
    "often also still never always sometimes usually generally typically mostly mainly "
    "largely primarily commonly frequently rarely then later now soon already first "
    "only even just almost nearly longer further not".split()
)

# Base forms of verbs the clause parser recognises; conjugations are derived below.
_VERBS = """
accept achieve acquire act add adopt affect allow amalgamate announce appear apply
arrive ask assign attack attempt attract avoid base become begin believe belong break
breed bring build buy call carry cause change charge check choose claim close collect
combine come commercialise commercialize compare compete complete comprise concentrate
consider consist contain continue contribute control convert cook cover create cross
cut deal debut decide declare decline define deliver depend describe design destroy
detect determine develop die differ discover display distribute dive divide do draw
drink drive drop earn eat eliminate emerge employ enable encourage end enjoy ensure
enter establish evolve examine exist expand expect explain export express extend face
fail fall feature feed feel fight fill find finish fly focus follow forage force form
found gain gather generate get give go grow happen hatch help hide hold hunt identify
implement improve include increase indicate influence inhabit inherit introduce invent
involve issue join keep kill know land last launch lay lead learn leave let lie limit
link live look lose make manage manufacture mark measure meet merge migrate move name
need nest note observe obtain occupy occur offer open operate order organise organize
originate own patent pay perform permit place plan play point preen prefer prepare
present preserve prevent produce promote protect prove provide publish pull purchase
push put raise rank reach read receive recognise recognize record reduce refer reflect
reject relate release rely remain remove rename replace report represent require reside
resolve result retain return reveal revolutionise revolutionize rise run save say see
seek seem sell send separate serve set settle share show sign sing sit sleep specialise
specialize spend split spread stand start stay stop store strain study submerge succeed
suffer suggest supply support survive swim take teach tend test think trace track trade
train transfer translate trap travel treat try turn understand undergo unite use vary
visit wait walk want watch win work write yield have analyse analyze automate
enhance integrate leverage predate transform resemble lack possess weigh cost mean range
mate moult molt adapt consume depict derive dominate estimate exceed favour favor host
outnumber pose reproduce sustain threaten utilise utilize wear assist compose disappear
evaluate govern handle install mature predict process regulate respond select solve
tolerate transport update
""".split()
_IRREGULAR = {  # base: (past, past participle)
    "become": ("became", "become"), "begin": ("began", "begun"), "break": ("broke", "broken"),
    "breed": ("bred", "bred"), "bring": ("brought", "brought"), "build": ("built", "built"),
    "buy": ("bought", "bought"), "choose": ("chose", "chosen"), "come": ("came", "come"),
    "cut": ("cut", "cut"), "deal": ("dealt", "dealt"), "do": ("did", "done"),
    "draw": ("drew", "drawn"), "drink": ("drank", "drunk"), "drive": ("drove", "driven"),
    "eat": ("ate", "eaten"), "fall": ("fell", "fallen"), "feed": ("fed", "fed"),
    "feel": ("felt", "felt"), "fight": ("fought", "fought"), "find": ("found", "found"),
    "fly": ("flew", "flown"), "get": ("got", "gotten"), "give": ("gave", "given"),
    "go": ("went", "gone"), "grow": ("grew", "grown"), "hide": ("hid", "hidden"),
    "hold": ("held", "held"), "keep": ("kept", "kept"), "know": ("knew", "known"),
    "lay": ("laid", "laid"), "lead": ("led", "led"), "leave": ("left", "left"),
    "let": ("let", "let"), "lose": ("lost", "lost"), "make": ("made", "made"),
    "meet": ("met", "met"), "pay": ("paid", "paid"), "put": ("put", "put"),
    "rise": ("rose", "risen"), "run": ("ran", "run"), "say": ("said", "said"),
    "see": ("saw", "seen"), "seek": ("sought", "sought"), "sell": ("sold", "sold"),
    "send": ("sent", "sent"), "set": ("set", "set"), "show": ("showed", "shown"),
    "sing": ("sang", "sung"), "sit": ("sat", "sat"), "sleep": ("slept", "slept"),
    "spend": ("spent", "spent"), "split": ("split", "split"), "spread": ("spread", "spread"),
    "stand": ("stood", "stood"), "swim": ("swam", "swum"), "take": ("took", "taken"),
    "teach": ("taught", "taught"), "think": ("thought", "thought"),
    "undergo": ("underwent", "undergone"), "win": ("won", "won"), "write": ("wrote", "written"),
    "lie": ("lay", "lain"), "have": ("had", "had"),
}


def _conjugate() -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
    """Third-person and past forms of _VERBS, each mapped to its base form."""
    present: dict[str, str] = {"has": "have"}
    past: dict[str, str] = {}
    participles: set[str] = {"been"}
    for base in _VERBS:
        if base.endswith(("s", "x", "z", "ch", "sh", "o")):
            present.setdefault(base + "es", base)
        elif base.endswith("y") and base[-2] not in "aeiou":
            present.setdefault(base[:-1] + "ies", base)
        else:
            present.setdefault(base + "s", base)
        if base in _IRREGULAR:
            forms = _IRREGULAR[base]
            if base != "lie":  # "lay" is a base form too
                past.setdefault(forms[0], base)
            participles.update(forms)
            continue
        if base.endswith("e"):
            regular = [base + "d"]
        elif base.endswith("y") and base[-2] not in "aeiou":
            regular = [base[:-1] + "ied"]
        else:
            # Doubling ("stopped") cannot be predicted without stress; both spellings
            # are listed and the wrong one simply never occurs in text.
            regular = [base + "ed"]
            if base[-1] not in "aeiouwxy":
                regular.append(base + base[-1] + "ed")
        for form in regular:
            past[form] = base
            participles.add(form)
    return present, past, frozenset(participles)


_PRESENT_S, _PAST, _PARTICIPLES = _conjugate()
_BASE = frozenset(_VERBS)

# Verbs that make "<Name> <verb> <thing>" a "who" question.
_WHO_VERBS = frozenset(
    """invented founded co-founded cofounded developed patented wrote introduced discovered
    designed created established built proposed published coined composed pioneered
    launched released devised formulated engineered authored painted directed produced
    manufactured acquired described named""".split()
)
# "X contains Y" -> "What does X contain?" (with the preposition the verb needs).
_WHAT_VERBS = {
    "contain": "", "include": "", "comprise": "", "consist": "of", "belong": "to",
    "feature": "", "refer": "to", "represent": "", "require": "", "eat": "",
    "feed": "on", "produce": "", "provide": "", "offer": "",
}
_SUPERLATIVE_WORDS = frozenset(
    "first last only most least best worst main largest smallest oldest newest".split()
)
_NOT_SUPERLATIVE = frozenset(
    "interest forest request test west rest nest guest chest contest protest harvest "
    "quest crest behest honest modest".split()
)
_CONNECTIVES = frozenset(
    "however moreover furthermore also thus therefore consequently instead overall today "
    "meanwhile nevertheless still indeed hence otherwise likewise again".split()
)
_INTRO_PREPOSITIONS = frozenset(
    """in on at during after before by for from since until within among across
    throughout under over unlike like despite following without through around beyond
    outside inside""".split()
)


# ---------------------------------------------------------------------------
# From a clause to a question
# ---------------------------------------------------------------------------


@dataclass
class Context:
    """What the rules know of a chunk beyond the sentence they read (chunk_context)."""

    lowercase_words: frozenset[str]  # words the chunk uses in lowercase
    name_words: frozenset[str]  # capitalised words the chunk uses inside sentences
    topic: str | None  # section heading (and document title) for the fallback


@dataclass
class _Clause:
    subject: str
    kind: str  # "aux" (is, can, has been ...) or "do" / "does" / "did" (do-support)
    verb: str  # the auxiliary as written, or the base form of the main verb
    rest: str


def _lower_first(phrase: str, ctx: Context) -> str:
    """Lowercase the first word if it is capitalised only because it starts a sentence.

    That is so when the chunk also uses it in lowercase, or when it modifies a
    lowercase word ("Dabbling ducks") and never appears capitalised mid-sentence (as
    names do: "Microsoft products").
    """
    words = phrase.split(" ", 1)
    first = words[0]
    core = first.lstrip(OPENERS)
    if core[:1].isupper() and (core[1:].islower() or core == "A"):
        lowered = core.lower()
        modifier = len(words) > 1 and words[1][:1].islower() and core not in ctx.name_words
        if (
            lowered in STOPWORDS | _DETERMINERS | _ADVERBS
            or lowered in ctx.lowercase_words
            or lowered.endswith("ly")
            or modifier
        ):
            words[0] = first[: len(first) - len(core)] + lowered
    return " ".join(words)


def _plural(subject_words: list[str]) -> bool:
    """A rough guess that the subject is plural (for "do" with a base-form verb)."""
    words = [bare_word(w) for w in subject_words if bare_word(w) not in _ADVERBS]
    if not words:
        return False
    if words[0] in {"these", "those", "many", "several", "few", "both", "all", "most", "various"}:
        return True
    if "and" in words:
        return True
    head = words[-1]
    irregular = {"people", "children", "men", "women", "geese", "mice", "feet", "teeth", "data"}
    return head in irregular or (head.endswith("s") and not head.endswith(("ss", "us", "is")))


def _valid_subject(words: list[str]) -> bool:
    if not words or bare_word(words[0]) in ANAPHORIC:
        return False
    if any(w.endswith((",", ";", ":")) or "(" in w or ")" in w for w in words):
        return False
    last = bare_word(words[-1])
    if not last or (last in STOPWORDS and last not in _ADVERBS) or last in _DETERMINERS:
        return False
    content = [w for w in words if bare_word(w) and bare_word(w) not in STOPWORDS | _DETERMINERS]
    return bool(content) and all(any(c.isalpha() for c in w) or w in "-–" for w in words)


def _parse_clause(clause: str) -> _Clause | None:
    """Split a declarative clause into subject, verb and the rest, or give up."""
    words = clause.split()
    for i in range(1, min(len(words), 12)):
        subject = words[:i]
        if any(w.endswith((",", ";", ":")) for w in subject):
            return None  # an intro phrase or a list: not a plain subject
        word = bare_word(words[i])
        following = bare_word(words[i + 1]) if i + 1 < len(words) else ""
        if not _valid_subject(subject):
            continue
        # "emerged, offering ...": the predicate ends at the comma
        rest = "" if words[i].endswith((",", ";", ":")) else " ".join(words[i + 1 :])
        if word in _AUXILIARIES:
            return _Clause(" ".join(subject), "aux", word, rest)
        if word in _PERFECT and (following in _PARTICIPLES or following in _ADVERBS):
            return _Clause(" ".join(subject), "aux", word, rest)
        if word in _PRESENT_S and following not in _BASE | _AUXILIARIES:
            # "results show": a plural noun followed by the real verb is skipped
            return _Clause(" ".join(subject), "does", _PRESENT_S[word], rest)
        if word in _PAST:
            return _Clause(" ".join(subject), "did", _PAST[word], rest)
        if word in _BASE and _plural(subject):
            return _Clause(" ".join(subject), "do", word, rest)
    return None


def _trim(rest: str) -> str:
    """The core of a predicate: cut at the first comma, bracket, dash or new verb."""
    rest = re.sub(r"\s*\([^()]*\)", "", rest)
    cut = re.split(r"\s*[,;:]\s|\s[-–—]\s|\s*—", rest, maxsplit=1)[0]
    words = cut.split()
    for i, word in enumerate(words[:-1]):
        if bare_word(word) in {"and", "but", "or"} and (
            bare_word(words[i + 1]) in _PAST or bare_word(words[i + 1]) in _PRESENT_S
        ):
            words = words[:i]  # "developed X and introduced Y": keep the first predicate
            break
    while words and bare_word(words[-1]) in {"and", "or", "but", "the", "a", "an", "of", "to"}:
        words.pop()
    return " ".join(words).rstrip(PUNCT.replace(")", "").replace("'", "").replace('"', ""))


def _as_question(clause: _Clause, ctx: Context) -> str:
    """Invert a clause: "ducks feed on land" -> "do ducks feed on land"."""
    subject = _lower_first(clause.subject, ctx)
    predicate = _trim(clause.rest)
    if clause.kind == "aux":
        return f"{clause.verb} {subject} {predicate}".strip()
    return f"{clause.kind} {subject} {clause.verb} {predicate}".strip()


def _split_intro(sentence: str) -> tuple[str | None, str]:
    """("In 1961", "IBM developed ...") for a sentence opening with a short phrase.

    A one-word connective ("Finally," "However,") is dropped: it links to the previous
    sentence and means nothing in a standalone question.
    """
    words = sentence.split()
    if len(words) > 1 and words[0].endswith(",") and re.fullmatch(r"[A-Z][a-z]+,", words[0]):
        if bare_word(words[0]).endswith("ly") or bare_word(words[0]) in _CONNECTIVES:
            words = words[1:]
            sentence = " ".join(words)
    if not words or bare_word(words[0]) not in _INTRO_PREPOSITIONS:
        return None, sentence
    for i, word in enumerate(words[:10]):
        if word.endswith(","):
            return " ".join(words[: i + 1])[:-1], " ".join(words[i + 1 :])
    return None, sentence


_LABEL = re.compile(r"^[A-Z][\w/&'’ -]{0,40}:\s+(?=[A-Z])")


def _clause_text(sentence: str) -> str:
    """The sentence without its end punctuation, parenthetical remarks, and a leading
    label ("Education: Word processors became ..." in slides and lists)."""
    text = re.sub(r"\s*\([^()]*\)", "", sentence)
    label = _LABEL.match(text)
    if label and len(label.group().split()) <= 5:
        text = text[label.end() :]
    return text.rstrip(CLOSERS + " ").rstrip(".!?").rstrip()


def _tidy(question: str) -> str:
    """Fix spacing left by the source ("Anatidae ." or "( CTR )") and capitalise."""
    question = re.sub(r"\s+([,.;:?!])", r"\1", question)
    question = re.sub(r"([(\[])\s+", r"\1", question)
    question = re.sub(r"\s+([)\]])", r"\1", question)
    question = " ".join(question.split())
    question = re.sub(r"[,;:\s]+([?.])$", r"\1", question)
    return question[:1].upper() + question[1:]


def _with_intro(intro: str | None, question: str) -> str:
    return f"{intro}, {question[:1].lower()}{question[1:]}" if intro else question


# ---------------------------------------------------------------------------
# Rules: each takes a prose sentence and returns (question type, question) or None
# ---------------------------------------------------------------------------

_YEAR = r"(?<![\d.,/-])(?:1[5-9]\d\d|20\d\d)(?:'?s)?(?![\d/-])"
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)"
)
_DATE = (
    rf"(?:(?:early|late|mid|the)[\s-]+)*"
    rf"(?:{_MONTH}\.?\s+\d{{1,2}},?\s+|\d{{1,2}}\s+{_MONTH}\s+|{_MONTH}\s+)?"
    rf"{_YEAR}(?:\s*(?:-|–|to|and|until)\s*{_YEAR})?"
)
_DATE_PHRASE = re.compile(
    rf"(?:\b(?:in|on|by|during|from|since|until|circa|around|about|before|after|between"
    rf"|throughout|as of)\s+)?{_DATE}",
    re.I,
)


def _what(sentence: str, ctx: Context) -> tuple[str, str] | None:
    intro, main = _split_intro(_clause_text(sentence))
    clause = _parse_clause(main)
    if clause is None or len(clause.subject.split()) > 8:
        return None
    subject = _lower_first(clause.subject, ctx)
    rest_words = clause.rest.split()
    first = bare_word(rest_words[0]) if rest_words else ""
    if clause.kind == "aux" and clause.verb in {"is", "are", "was", "were"}:
        if first in _ADVERBS or first.endswith("ly"):
            rest_words = rest_words[1:]
            first = bare_word(rest_words[0]) if rest_words else ""
        if first in {"called", "named", "termed", "dubbed"} or (
            first == "known" and len(rest_words) > 1 and bare_word(rest_words[1]) == "as"
        ):
            named = "known as" if first == "known" else first
            return "what", _with_intro(intro, f"What {clause.verb} {subject} {named}?")
        second = bare_word(rest_words[1]) if len(rest_words) > 1 else ""
        if second in _SUPERLATIVE_WORDS or second.endswith("est"):
            return None  # "X is the largest Y" makes a better "which" question
        if first in {"a", "an", "the"} and not intro or not rest_words:
            return "what", _with_intro(intro, f"What {clause.verb} {subject}?")
        # "The scaled legs are strong and well developed" -> "What are the scaled legs like?"
        after = bare_word(rest_words[1]) if len(rest_words) > 1 else ""
        if (
            first
            and first not in STOPWORDS | _DETERMINERS | _PREPOSITIONS
            and not first.endswith(("ing", "s"))
            and (after in {"and", "or", "than"} or rest_words[0].endswith(","))
        ):
            return "what", _with_intro(intro, f"What {clause.verb} {subject} like?")
        return None
    if clause.kind in {"do", "does", "did"} and clause.verb in _WHAT_VERBS:
        preposition = _WHAT_VERBS[clause.verb]
        if preposition and first != preposition:
            return None
        question = f"What {clause.kind} {subject} {clause.verb} {preposition}".strip() + "?"
        return "what", _with_intro(intro, question)
    return None


def _which(sentence: str, ctx: Context) -> tuple[str, str] | None:
    intro, main = _split_intro(_clause_text(sentence))
    clause = _parse_clause(main)
    if clause is None:
        return None
    rest = clause.rest.split()
    if clause.kind == "aux" and clause.verb in {"is", "are", "was", "were"} and len(rest) > 2:
        words = rest[2:] if [bare_word(w) for w in rest[:2]] == ["one", "of"] else rest
        if len(words) > 2 and bare_word(words[0]) == "the":
            word = bare_word(words[1])
            superlative = word in _SUPERLATIVE_WORDS or (
                word.endswith("est") and len(word) > 5 and word not in _NOT_SUPERLATIVE
            )
            if superlative:
                predicate = _trim(" ".join(rest))
                if len(predicate.split()) >= 3:
                    return "which", _with_intro(intro, f"Which {clause.verb} {predicate}?")
    # "Ducks eat food sources such as grasses" -> "Which food sources do ducks eat?"
    match = re.match(r"(.+?),?\s+(?:such as|including|like)\s+\S", clause.rest)
    if match is None or clause.kind == "aux" and clause.verb not in _PERFECT:
        return None
    obj = match.group(1).split()
    participle = ""
    if clause.kind == "aux":  # "Ducks have reached islands such as ..."
        if not obj or bare_word(obj[0]) not in _PARTICIPLES:
            return None
        participle, obj = obj[0], obj[1:]
    while obj and bare_word(obj[0]) in _DETERMINERS | {"of", "number", "variety", "range"}:
        obj = obj[1:]  # "a number of isolated islands" -> "isolated islands"
    if not 1 <= len(obj) <= 5 or any(bare_word(w) in STOPWORDS for w in obj):
        return None
    subject = _lower_first(clause.subject, ctx)
    noun = " ".join(obj).strip(PUNCT)
    if participle:
        question = f"Which {noun} {clause.verb} {subject} {participle}?"
    else:
        question = f"Which {noun} {clause.kind} {subject} {clause.verb}?"
    return "which", _with_intro(intro, question)


_HEDGES = "possibly|probably|perhaps|partly|mainly|largely|mostly|likely"
_WHY_CUE = re.compile(r"\b(?:because|due to|owing to|in order to|so that|, since)\b", re.I)


def _why(sentence: str, ctx: Context) -> tuple[str, str] | None:
    text = _clause_text(sentence)
    # "Because B, A" and "To do B, A": the reason or purpose comes first
    lead = re.match(r"(?:Because|Since|To)\s([^,]{3,}?),\s+(.+)$", text)
    # "Since 1990, ..." is a time, not a reason
    reason_first = lead is not None and not re.search(r"\d", lead.group(1))
    if reason_first:
        intro, main = _split_intro(lead.group(2))
    else:
        intro, text = _split_intro(text)
        cue = _WHY_CUE.search(text)
        if cue is None or re.match(r"\s*\d", text[cue.end() :]):
            return None
        main = text[: cue.start()].rstrip(" ,;")
        main = re.sub(rf",?\s+(?:{_HEDGES})$", "", main)  # "..., possibly because"
        if "," in main:
            return None  # the reason may belong to a later clause than the subject's
    if len(main.split()) < 3:
        return None
    clause = _parse_clause(main)
    if clause is not None:
        if not reason_first and _trim(clause.rest) != clause.rest.strip():
            return None  # the reason may explain a later part than the one asked about
        question = f"Why {_as_question(clause, ctx)}?"
    elif _valid_subject(main.split()[:1]) and bare_word(main.split()[0]) not in _BASE and any(
        bare_word(w) in _AUXILIARIES | _PERFECT or bare_word(w) in _PRESENT_S or bare_word(w) in _PAST
        for w in main.split()
    ):
        # a verb the parser cannot place: keep the clause as it is rather than invert it
        variant = zlib.crc32(sentence.encode()) % 2
        opener = "Why is it that" if variant == 0 else "What is the reason that"
        question = f"{opener} {_lower_first(_trim(main), ctx)}?"
    else:
        return None
    return "why", _with_intro(intro, question)


_USED_FOR = frozenset({"to", "for", "as", "in"})
_HOW_CUE = re.compile(r"\s(?:by\s+(?=[\w-]+ing\b)|through\s|using\s|via\s|with the help of\s)")


def _how(sentence: str, ctx: Context) -> tuple[str, str] | None:
    text = _clause_text(sentence)
    intro, main = _split_intro(text)
    clause = _parse_clause(main)
    if clause is not None and clause.kind == "aux" and clause.verb in {"is", "are", "was", "were"}:
        rest = clause.rest.split()
        if rest and (bare_word(rest[0]) in _ADVERBS or bare_word(rest[0]).endswith("ly")):
            rest = rest[1:]
        if len(rest) > 1 and bare_word(rest[0]) == "used" and bare_word(rest[1]) in _USED_FOR:
            subject = _lower_first(clause.subject, ctx)
            return "how", _with_intro(intro, f"How {clause.verb} {subject} used?")
    cue = _HOW_CUE.search(main)
    if cue is None:
        return None
    before = main[: cue.start()].rstrip(" ,")
    clause = _parse_clause(before)
    if clause is None or len(before.split()) < 3 or "," in before:
        return None
    if _trim(clause.rest) != clause.rest.strip():
        return None  # "X predates Y and has evolved through Z": "through" is not about Y
    return "how", _with_intro(intro, f"How {_as_question(clause, ctx)}?")


def _how_to(intro_line: str) -> tuple[str, str] | None:
    """"To get started, first do X:" -> "How do you get started?" (instructions)."""
    match = re.match(
        r"To\s+(\w+)\s+([^,]{2,80}?),\s*(?:(?:first|then|simply|just)\s+)?(\w+)", intro_line
    )
    if match is None or match.group(1).lower() not in _BASE or match.group(3).lower() not in _BASE:
        return None
    return "how", f"How do you {match.group(1).lower()} {match.group(2)}?"


def _when(sentence: str, ctx: Context) -> tuple[str, str] | None:
    text = _clause_text(sentence)
    date = _DATE_PHRASE.search(text)
    if date is None or "," in text[: date.start()].rstrip(", "):
        return None  # the year belongs to a later clause than the subject's
    lead = date.group().split()[0].lower()
    wh = {"since": "Since when", "by": "By when", "until": "Until when"}.get(lead, "When")
    text = re.sub(rf"\s*\([^()]*{_YEAR}[^()]*\)", "", text)
    text = _DATE_PHRASE.sub("", text)
    text = re.sub(r"\s+,", ",", " ".join(text.split())).strip(" ,")
    if re.search(_YEAR, text) or not text:
        return None
    intro, main = _split_intro(text)
    clause = _parse_clause(main)
    past = clause is not None and (
        clause.kind == "did" or clause.verb in {"was", "were", "had", "has", "have"}
    )
    if not past or (clause.kind == "aux" and not _trim(clause.rest)):
        return None
    return "when", _with_intro(intro, f"{wh} {_as_question(clause, ctx)}?")


_NAME_WORD = re.compile(r"^(?:[A-Z][\w'’.-]*|[A-Z]\.|(?:de|van|von|der|da|di|du|la|le))$")


def _is_name(words: list[str], ctx: Context) -> bool:
    """A person- or organisation-like name: capitalised words, initials, an acronym."""
    if not 1 <= len(words) <= 4 or not all(_NAME_WORD.match(w) for w in words):
        return False
    first = bare_word(words[0])
    if first in STOPWORDS or first in _DETERMINERS or first in ANAPHORIC:
        return False
    if len(words) == 1:
        word = words[0].strip(PUNCT)
        return (word.isupper() and len(word) > 1) or word.lower() not in ctx.lowercase_words
    return True


def _who(sentence: str, ctx: Context) -> tuple[str, str] | None:
    intro, main = _split_intro(_clause_text(sentence))
    words = main.split()
    for i in range(1, min(len(words), 5)):
        if bare_word(words[i]) in _WHO_VERBS and _is_name(words[:i], ctx):
            obj = _trim(_DATE_PHRASE.sub("", " ".join(words[i + 1 :])))
            if len(obj.split()) >= 2:
                return "who", _with_intro(intro, f"Who {bare_word(words[i])} {obj}?")
            return None
    # passive: "The typewriter was patented by Christopher Sholes"
    clause = _parse_clause(main)
    if clause is None or clause.kind != "aux" or clause.verb not in {"was", "were", "is", "are"}:
        return None
    match = re.match(
        r"(?:first\s+)?(\S+)\s+(?:[^,;]*?\s)?by\s+((?:[A-Z][\w.'’-]*\s?){1,4})", clause.rest
    )
    if match and bare_word(match.group(1)) in _WHO_VERBS and _is_name(match.group(2).split(), ctx):
        subject = _lower_first(_trim(clause.subject), ctx)
        return "who", _with_intro(intro, f"Who {bare_word(match.group(1))} {subject}?")
    return None


# ---------------------------------------------------------------------------
# The fallback: "Explain <key phrase> in the context of <topic>."
# ---------------------------------------------------------------------------


_PREPOSITIONS = frozenset(
    """except including like unlike among amongst despite toward towards across along
    behind beside besides beyond near per versus throughout onto around against inside
    outside following according regarding concerning due""".split()
)


def _is_content_word(word: str) -> bool:
    bare = bare_word(word)
    return (
        len(bare) > 1
        and re.fullmatch(r"[A-Za-z\u00c0-\u024f][\w'’-]*", word.strip(PUNCT)) is not None
        and all(c < "\u0250" for c in bare)
        and word.lstrip(OPENERS) == word  # a quotation starts a new phrase
        and bare not in STOPWORDS | _DETERMINERS | ANAPHORIC | _ADVERBS | _PREPOSITIONS
        and bare not in _PRESENT_S
        and bare not in _PAST
        and not bare.endswith(("ly", "n't", "n’t"))
    )


def _key_phrase(sentence: str, ctx: Context) -> str | None:
    """The sentence's subject if it is a noun phrase of 2+ content words, else the
    longest run of content words (capitalised names win ties), with its "the"."""
    intro, main = _split_intro(sentence)
    clause = _parse_clause(main)
    if clause is not None and len(clause.subject.split()) <= 8:
        subject = clause.subject.split()
        while subject and (bare_word(subject[-1]) in _ADVERBS or bare_word(subject[-1]).endswith("ly")):
            subject.pop()  # "The plumage of juvenile birds generally resembles ..."
        content = [w for w in subject if _is_content_word(w)]
        if len(content) >= 2 and not any(bare_word(w) in _ADVERBS | {"no"} for w in subject):
            return _lower_first(" ".join(subject), ctx)

    words = sentence.split()
    runs: list[list[int]] = []
    current: list[int] = []
    for i, word in enumerate(words):
        # a bare verb form starts no phrase, but "body plan" may contain one
        if _is_content_word(word) and not (not current and bare_word(word) in _BASE):
            current.append(i)
            if word == word.rstrip(PUNCT):
                continue
        if current:
            runs.append(current)
        current = []
    if current:
        runs.append(current)
    for run in runs:
        # a noun phrase ends in a noun: not "company headquartered", "Flint forming" or
        # "screamers belong"
        while len(run) > 1:
            last, before = words[run[-1]], words[run[-2]]
            bare = bare_word(last)
            if last.islower() and (
                bare.endswith("ed")
                or (bare.endswith("ing") and (before[:1].isupper() or len(run) > 2))
                or (bare in _BASE and bare_word(before).endswith("s"))
            ):
                run.pop()
            else:
                break

    def rank(run: list[int]) -> tuple[int, bool, int]:
        capitalised = all(words[i][:1].isupper() for i in run) and run[0] != 0
        return (min(len(run), 5), capitalised, -run[0])

    candidates = [r for r in runs if len(r) >= 2 or (words[r[0]][:1].isupper() and r[0] != 0)]
    if not candidates:
        return None
    best = max(candidates, key=rank)[-5:]
    phrase = " ".join(words[i] for i in best).strip(PUNCT)
    if best[0] == 0:
        phrase = _lower_first(phrase, ctx)
    elif bare_word(words[best[0] - 1]) in {"the", "a", "an"} and not phrase[:1].isupper():
        phrase = f"the {phrase}"
    return phrase


def _explain(sentence: str, ctx: Context) -> tuple[str, str] | None:
    phrase = _key_phrase(_clause_text(sentence), ctx)
    if phrase is None:
        return None
    verb = "Explain" if zlib.crc32(sentence.encode()) % 2 == 0 else "Describe"
    topic = ctx.topic
    if topic and phrase.lower() != topic.lower():
        return "explain", f"{verb} {phrase} in the context of {topic}."
    return "explain", f"{verb} {phrase}."


_RULES = (_what, _why, _how, _when, _who, _which, _explain)


def _looks_like_title(title: str | None) -> bool:
    """A real title, not a file name such as "wiki_duck" or "2305.03393v1-pg9"."""
    return bool(title) and "_" not in title and re.search(r"[A-Za-z]{3}", title) is not None and (
        " " in title.strip() or title.strip()[:1].isupper()
    )


def _topic(headings: list[str], title: str | None) -> str | None:
    """Context for fallback questions: the last heading, with the document's title."""
    clean = [" ".join(h.strip().lstrip("#").split()) for h in headings if h and h.strip()]
    heading = clean[-1] if clean else None
    document = clean[0] if len(clean) > 1 else (title if _looks_like_title(title) else None)
    if heading and document and document.lower() not in heading.lower():
        return f"{heading} ({document})"
    return heading or document


# ---------------------------------------------------------------------------
# The questions for a unit
# ---------------------------------------------------------------------------


def chunk_context(text: str, headings: list[str], title: str | None) -> Context:
    """The Context of a chunk with these headings and this document title."""
    return Context(
        lowercase_words=frozenset(re.findall(r"\b[a-z][a-z'’-]*\b", text)),
        name_words=frozenset(re.findall(r"(?<=[a-z,;] )[A-Z][\w'’-]*", text)),
        topic=_topic(list(headings or []), title),
    )


def questions_for(unit: Unit, ctx: Context) -> list[tuple[str, str]]:
    """(type, question) for every rule that fits the unit and gives a usable question."""
    if unit.is_list:
        if not (is_latin_prose(unit.sentence) and unit.sentence[:1].isupper()):
            return []
        intro = _clause_text(unit.sentence.rstrip(":"))
        found = [_how_to(intro), _what(intro, ctx)]
    elif is_prose(unit.sentence) and bare_word(unit.sentence.split()[0]) not in ANAPHORIC:
        found = [rule(unit.sentence, ctx) for rule in _RULES]
    else:
        return []
    out = []
    for kind, question in filter(None, found):
        question = _tidy(question)
        ends_well = question.endswith("?") or (kind == "explain" and question.endswith("."))
        if (
            ends_well
            and len(question.split()) >= 3
            and len(question) <= MAX_QUESTION_CHARS
            and not BANNED_IN_QUESTIONS.search(question)
            and normalise(question) != normalise(unit.sentence)
        ):
            out.append((kind, question))
    return out

