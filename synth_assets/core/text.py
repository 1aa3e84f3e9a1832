"""Text primitives shared by the pair filters (filters.py), near-duplicate detection
(dedup.py) and the heuristic judge (judge.py): tokens, crude stems and word lists, the
grounding scores of an answer against its chunk, and the checks of one pair's form
(question or instruction, refusal, passage-dependent, answer repeating the question).
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache
from typing import Any

# Instruction verbs that make a sentence a request even without a question mark.
IMPERATIVE_VERBS = frozenset(
    {"explain", "describe", "list", "summarize", "summarise", "compare", "define",
     "outline", "name", "give"}
)

# Common English function words. They carry no content (so they are left out of the
# grounding score) and make up a large share of any English prose (so their share tells
# prose from filler text, word lists and codes).
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren as at be because
    been before being below between both but by can cannot could couldn did didn do does
    doesn doing don down during each either even ever every few for from further had hadn
    has hasn have haven having he her here hers herself him himself his how however i if
    in into is isn it its itself just least less let like may me might more most much
    must mustn my myself neither no nor not now of off often on once one only or other
    ought our ours ourselves out over own per rather same shall shan she should shouldn
    since so some such than that the their theirs them themselves then there these they
    this those though through thus to too under until up upon us very via was wasn we
    were weren what when where whether which while who whom whose why will with within
    without won would wouldn yet you your yours yourself yourselves
    d ll m re s t ve
    """.split()
)

TOKEN = re.compile(r"\w+")  # letters and digits, for grounding: numbers must match too
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}“”‘’«»—–…¿¡]")
# The default gap of skip_bigram_support (FilterConfig.skip_bigram_window).
SKIP_BIGRAM_WINDOW = 4


# The source, as an answer or a question may point at it.
_SOURCE_NOUNS = (
    r"(?:passage|text|document|article|excerpt|paragraph|section|chapter|paper|study|report"
    r"|source|snippet|chunk|context|material|reading|story|extract|information)"
)
# Refusals and meta-talk in an answer: phrasings a sentence of a source document would
# hardly use. "I cannot" alone also occurs in quoted speech, so the first-person
# refusals count only at the start of the answer.
_REFUSAL_START = re.compile(
    r"^\W*(?:i(?:'m| am) (?:sorry|afraid|unable|not able)|sorry\b|i apologi[sz]e"
    r"|i (?:cannot|can't|can not|could not|couldn't|won't|will not|do not|don't)"
    r" (?:answer|provide|help|determine|find|say|know|assist|comply|tell|access)"
    rf"|unfortunately,? (?:i\b|the {_SOURCE_NOUNS}))",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\bas an? (?:ai|artificial intelligence|language model|large language model|llm"
    r"|ai (?:language )?model|assistant)\b"
    rf"|\b(?:the|this|provided|given) {_SOURCE_NOUNS}s? (?:does not|doesn't|do not|don't"
    r"|did not|didn't|fails to|cannot|can't) (?:say|state|mention|specify|provide|contain"
    r"|include|give|indicate|describe|discuss|explain|address|tell|clarify|offer)"
    r"|\b(?:is|are|was|were) (?:not|never) (?:mentioned|specified|stated|provided|given"
    rf"|discussed|described|addressed|included) in the {_SOURCE_NOUNS}"
    r"|\bno (?:information|mention|details?|data) (?:is |are )?(?:provided|given|available"
    rf"|about|on|regarding|in the {_SOURCE_NOUNS})"
    r"|\b(?:there is|there's) (?:no|not enough|insufficient) information\b"
    r"|\bnot enough information\b|\bcannot be determined (?:from|based on)\b"
    r"|\b(?:based on|according to|from) the (?:provided |given |above )?(?:text|passage"
    r"|context|excerpt|snippet|chunk|information provided|source text)\b"
    r"|\b(?:the|this) (?:passage|excerpt|snippet) (?:says|states|mentions|describes"
    r"|explains|notes|suggests|indicates)\b"
    r"|\b(?:my|the model's) (?:training data|knowledge cutoff|knowledge cut-off)\b",
    re.IGNORECASE,
)
# Refusals and meta-talk in the other languages with phrasings here, one entry per
# language: apologies and "I cannot answer" at the start of the answer (as in English),
# and anywhere in it "as an AI model", "the text does not mention", "no information
# about", "according to the text".
_REFUSAL_PHRASES: dict[str, tuple[str, ...]] = {
    "de": (
        r"^\W*(?:es tut mir leid|tut mir leid|entschuldigung|leider (?:kann|können|ist es nicht|lässt sich)"
        r"|ich (?:kann|könnte|darf) (?:\w+ ){0,3}?(?:nicht|keine)"
        r"|ich bin (?:leider )?nicht in der lage)",
        r"\bals (?:eine? )?(?:KI|künstliche Intelligenz|KI-Modell|KI-Sprachmodell|Sprachmodell|KI-Assistent)\b",
        r"\b(?:der|die|das|dem|diese[rms]?) (?:vorliegende |angegebene |gegebene )?(?:Text|Abschnitt|Dokument"
        r"|Artikel|Absatz|Auszug|Passage|Kontext|Quelle) (?:\w+ )?(?:sagt|nennt|erwähnt|enthält|gibt|beschreibt"
        r"|macht|liefert|erklärt)(?: \w+){0,3}? (?:nicht|keine[n]?|nichts)\b",
        r"\b(?:im|in der|in dem|in diese[mr]) (?:vorliegenden |angegebenen |gegebenen |obigen )?(?:Text|Abschnitt|Dokument|Artikel|Absatz|Auszug|Passage|Kontext)"
        r" (?:\w+ ){0,4}?(?:nicht|nirgends) (?:erwähnt|genannt|angegeben|beschrieben|erklärt|aufgeführt)",
        r"\b(?:geht|gehen) aus (?:dem|der|diesem|dieser) (?:Text|Abschnitt|Dokument|Artikel|Absatz|Auszug"
        r"|Passage|Kontext) nicht hervor",
        r"\bkeine (?:Informationen|Angaben|Hinweise|Details) (?:über|zu|dazu|darüber|vor|enthalten|gegeben)\b",
        r"\b(?:laut|gemäß|basierend auf|auf der Grundlage) (?:de[mn] |der |des )?(?:vorliegenden |angegebenen "
        r"|gegebenen )?(?:Text|Textes|Abschnitt|Abschnitts|Auszug|Auszugs|Kontext|Kontexts|Passage)\b",
    ),
    "ar": (
        r"^\W*(?:عذرا|عذرًا|عذراً|آسف|أنا آسف|أعتذر|للأسف|لا أستطيع|لا يمكنني|لا أملك)",
        r"(?:بصفتي|كوني|ك)\s?(?:نموذج|نموذجا|نموذجًا) (?:لغوي|لغويا|ذكاء اصطناعي|للذكاء الاصطناعي)",
        r"(?:لا|لم) (?:يذكر|يتضمن|يحتوي|يوضح|يحدد|يقدم|يشير)\S* (?:\S+ )?(?:ال)?(?:نص|مقطع|فقرة|مستند|سياق)",
        r"(?:ال)?(?:نص|مقطع|فقرة|مستند|سياق) (?:لا|لم) (?:يذكر|يتضمن|يحتوي|يوضح|يحدد|يقدم|يشير)",
        r"لا (?:توجد|تتوفر|يوجد) (?:أي )?(?:معلومات|تفاصيل|بيانات)",
        r"(?:وفقا|وفقًا|وفقاً|طبقا|بناء|بناءً|استنادا|استنادًا)\s(?:لل|على\s?ال|إلى\s?ال)(?:نص|مقطع|فقرة|سياق)",
        r"(?:حسب|بحسب) (?:ال)?(?:نص|مقطع|فقرة|سياق)",
    ),
    "ko": (
        r"^\W*(?:죄송|미안|유감스럽게도|안타깝게도)",
        r"(?:답변|대답|답|확인|판단)(?:을|를|해)? ?(?:드릴|할|하기) 수 없",
        r"(?:AI|인공지능|언어 ?모델|AI 언어 ?모델)(?:로서|으로서)",
        r"(?:언급|명시|제시|설명|기재|제공)(?:되어|돼|하고|되)(?: 있)?지 않",
        r"(?:정보|내용)(?:가|는|이|은)? (?:없|나와 있지 않|포함되어 있지 않)",
        r"(?:본문|지문|글|텍스트|문맥|주어진 (?:글|텍스트|자료))(?:에|에서)? 따르면",
    ),
    "zh": (
        r"^\W*(?:抱歉|对不起|很抱歉|不好意思|我无法|我不能|我没法)",
        r"作为(?:一个|一名)?(?:AI|人工智能|语言模型|AI语言模型|人工智能语言模型|AI助手|人工智能助手)",
        r"(?:文中|本文|原文|上文|文本|材料|文章|段落|所给|提供的)(?:中|里)?(?:并)?(?:没有|未|没)"
        r"(?:提到|提及|说明|指出|给出|涉及|包含|提供|明确)",
        r"(?:没有|缺乏|无)(?:相关|足够|具体)?(?:的)?(?:信息|资料|内容)(?:可以|能够|来)?",
        r"(?:根据|依据|按照|基于)(?:所给|提供的|给定的)?(?:文本|本文|原文|上文|文中|材料|文章|段落|内容)",
    ),
}
_REFUSAL_MORE = re.compile("|".join(p for phrases in _REFUSAL_PHRASES.values() for p in phrases), re.IGNORECASE)
# The German entries' words that an English answer would hardly contain: an ASCII answer
# with none of them skips the pattern.
_REFUSAL_MORE_HINTS = ("leid", "entschuldig", "leider", "ich ", "als ", "nicht", "keine", "laut", "gem", "basierend",
                       "grundlage", "hervor")
# Every branch of _REFUSAL contains one of these. Searching the whole pattern costs
# ~35 us per answer (3.5 s per 100,000 pairs); most answers contain none of them.
_REFUSAL_HINTS = (
    "as a", "text", "passage", "document", "article", "excerpt", "paragraph", "section",
    "chapter", "paper", "study", "report", "source", "snippet", "chunk", "context",
    "material", "reading", "story", "extract", "information", "mention", "detail", "data",
    "determined",
)
# Questions that point at the source instead of standing alone. "The document" or "the
# text" alone can be a subject ("when the document is saved"), so they count only with a
# word that points ("this text", "the text above", "according to the document").
_PASSAGE_DEPENDENT = re.compile(
    rf"\b(?:according to|based on|from|as (?:stated|described|mentioned|shown|noted) in)"
    rf" (?:the|this|that|these) (?:above |given |provided |following |preceding )?"
    rf"(?:{_SOURCE_NOUNS}|author|authors|writer|table|figure)s?\b"
    rf"|\b(?:the|this|that) (?:above|preceding|following|given|provided|previous|foregoing)"
    rf" (?:{_SOURCE_NOUNS}|table|figure)"
    rf"|\bthe {_SOURCE_NOUNS} (?:above|below|provided|given)\b"
    r"|\bthe above\b|\b(?:above|below)-mentioned\b|\bwhich of the following\b"
    rf"|\b(?:in|from|of|by) (?:this|these) {_SOURCE_NOUNS}s?\b"
    r"|\bthis (?:passage|text|document|article|excerpt|paragraph|paper|study|snippet|chunk"
    r"|extract)\b"
    r"|\b(?:the|this) (?:passage|excerpt|snippet|extract)\b(?! of\b)"
    r"|\b(?:mentioned|described|discussed|stated|listed|shown|given|noted|presented|outlined"
    r"|referred to|cited) (?:above|below|earlier|previously)\b"
    r"|\b(?:mentioned|described|discussed|stated|listed|shown|noted|presented|outlined)"
    rf" in the {_SOURCE_NOUNS}\b"
    r"|\bthe authors?\b(?! of\b)(?!'s? of\b)",
    re.IGNORECASE,
)

# The same in the other languages with phrasings here: German, Arabic, Korean, Chinese.
# Every word of the English list that points at the source is matched at any position,
# with a verb that only a reader of the source would use ("What does the text say about
# X?", "Why does the document mention X?") or a place word ("mentioned here", "in the
# list below"). The German verbs come first in a question ("Was sagt der Text ...").
_SAYING_VERBS = (
    r"(?:say|says|said|state|states|stated|mention|mentions|mentioned|describe|describes"
    r"|described|explain|explains|discuss|discusses|suggest|suggests|imply|implies|claim"
    r"|claims|argue|argues|note|notes|indicate|indicates|show|shows|highlight|highlights"
    r"|emphasi[sz]e|emphasi[sz]es|focus|focuses|cover|covers|present|presents|propose"
    r"|proposes|list|lists|refer|refers|tell|tells|talk|talks|conclude|concludes|report"
    r"|reports|outline|outlines)"
)
_AR_LETTER = r"\u0621-\u064A"
_PASSAGE_DEPENDENT_MORE = re.compile(
    # English
    rf"\b(?:does|do|did|is|was|can|would) the {_SOURCE_NOUNS}s? {_SAYING_VERBS}\b"
    rf"|\bthe (?:passage|text|excerpt|paragraph|article|section|chapter|snippet|extract|document"
    rf"|report|study|paper|author|authors|writer) {_SAYING_VERBS}\b"
    r"|\b(?:in|within|from|throughout) the (?:passage|text|excerpt|paragraph|article|snippet"
    r"|extract|chapter)\b(?! of\b)"
    r"|\bthis (?:section|chapter|report|page|entry|part|source|passage)\b"
    r"|\b(?:mentioned|described|discussed|stated|listed|shown|given|noted|presented|outlined"
    r"|referred to|cited|named|covered|explained) (?:here|herein|in this)\b"
    r"|\b(?:here|above|below) (?:mentioned|described|discussed|listed|shown|named)\b"
    r"|\bthe (?:list|table|figure|example|diagram|image|steps?|code|quote|quotation|definition"
    r"|description|statement|sentence|paragraph|section|text) (?:above|below)\b"
    r"|\bthe writers?\b(?! of\b)"
    # German
    r"|\b(?:im|laut|gemäß|nach|aus|in) (?:de[mn] )?(?:obigen |vorliegenden |vorherigen |folgenden"
    r" |angegebenen |gegebenen |genannten )?(?:Text|Textes|Abschnitt|Abschnitts|Artikel|Artikels"
    r"|Absatz|Absatzes|Auszug|Auszugs|Kapitel|Beitrag|Beitrags|Textabschnitt|Textstelle|Passage)\b"
    r"|\b(?:laut|gemäß) (?:de[mn] |der )?(?:Dokument|Dokuments|Autor|Autorin|Verfasser|Verfasserin)\b"
    r"|\bdies(?:e|er|em|en|es)? (?:Text|Textes|Abschnitt|Abschnitts|Dokument|Dokuments|Artikel"
    r"|Artikels|Absatz|Absatzes|Auszug|Auszugs|Kapitel|Beitrag|Beitrags|Passage|Textstelle|Quelle)\b"
    r"|\b(?:sagt|sagen|erwähnt|erwähnen|beschreibt|beschreiben|erklärt|erklären|behauptet"
    r"|nennt|nennen|schreibt|schreiben|zeigt|meint|betont|betonen|argumentiert|schildert"
    r"|berichtet|schlägt|fordert|kritisiert|sieht|stellt|führt) (?:der|die|das|den) (?:obige |vorliegende )?"
    r"(?:Text|Abschnitt|Dokument|Artikel|Absatz|Auszug|Kapitel|Beitrag|Autor|Autorin|Autoren"
    r"|Verfasser|Verfasserin|Passage|Quelle)\b"
    r"|\b(?:der|die|des|dem|den) (?:Autor|Autorin|Autoren|Verfasser|Verfasserin|Verfassers"
    r"|Autors)\b(?! de[rs]\b)"
    r"|\b(?:oben|unten|hier|zuvor|vorher|weiter oben|weiter unten|eingangs) (?:genannt|erwähnt"
    r"|beschrieben|aufgeführt|angegeben|dargestellt|gezeigt|aufgelistet|besprochen|zitiert)\w*"
    # Arabic: the text, passage, paragraph, article, author, writer, document (with the
    # clitics و ف ب ل ك before the article), above, below, this section.
    rf"|(?<![{_AR_LETTER}])[وفبلك]?[بل]?ال(?:نص|مقطع|فقرة|مقال|مؤلف|كاتب|مستند|وثيقة|مقتطف)"
    rf"(?![{_AR_LETTER}])"
    rf"|(?<![{_AR_LETTER}])(?:أعلاه|أدناه)(?![{_AR_LETTER}])"
    rf"|(?<![{_AR_LETTER}])(?:هذا|هذه) ال(?:قسم|فصل|جزء|نص|فقرة|وثيقة|مقال)(?![{_AR_LETTER}])"
    # Korean: body text, reading passage, this/above text, this document/paragraph/section,
    # author, writer, mentioned above/here.
    r"|본문|지문|윗글|(?:이|위|아래|다음|해당) (?:글|문서|문단|단락|섹션|기사|부분|텍스트|자료|내용)"
    r"|저자|필자|글쓴이|(?:위|아래|앞|여기|본문|이 글)에서 (?:언급|설명|제시|소개|말한)"
    # Chinese: in the text, this text, above, below, the original text, this section,
    # the author, this article, the material.
    r"|文中|本文|原文|上文|下文|该文|此文|上述|下述|前文|作者|文章中|文档中|材料中|短文"
    r"|这段(?:文字|话|内容|材料)|这篇|本段|该段|本节|这一节|这部分|本章|这一章",
    re.IGNORECASE,
)
# Every English branch of _PASSAGE_DEPENDENT_MORE contains one of these (lowercased), and
# the other languages' branches non-ASCII letters or one of the German words: searching
# the whole pattern costs ~50 us per question, most questions contain none of them.
_PASSAGE_HINTS = (
    "passage", "text", "excerpt", "paragraph", "article", "section", "chapter", "snippet",
    "extract", "document", "report", "study", "paper", "author", "writer", "source", "chunk",
    "context", "material", "reading", "story", "information", "entry", "part", "page",
    "here", "above", "below", "list", "table", "figure", "example", "diagram", "image",
    "step", "code", "quot", "definition", "description", "statement", "sentence",
    "dies", "laut", "gemäß", "verfasser", "autor", "oben", "unten", "zuvor", "vorher",
    "eingangs", "beitrag", "absatz", "auszug", "kapitel", "quelle", "abschnitt", "dokument",
    "artikel", "in this", "hier",
)
# Text aimed at a model rather than a reader, as injected into web pages and documents
# ("ignore previous instructions", "print the hidden system prompt", "you are now DAN").
# Each branch needs a word that a document about something else would hardly pair with
# it: "ignore" with "previous instructions", "act as" only as a command at a sentence
# start, "you are now" only with a model's role.
_INSTRUCTION_LIKE = re.compile(
    r"\b(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|bypass"
    r"|bypassing)\b(?: \w+){0,3}? (?:previous|prior|above|earlier|preceding|original|initial"
    r"|system|safety|all|your|its|any) (?:instructions?|prompts?|rules|directions|guidelines"
    r"|commands|directives|constraints)\b"
    r"|\b(?:system|hidden|secret|initial|original) prompt\b"
    r"|\b(?:reveal|print|output|repeat|show|leak|disclose|display) (?:\w+ ){0,2}?(?:system|hidden"
    r"|secret|internal|initial|original) (?:prompt|instructions|message|rules|configuration)\b"
    r"|\byou are now (?:an? |the |my )?(?:ai|assistant|chatbot|bot|model|language model|dan"
    r"|unrestricted|unfiltered|jailbroken|uncensored|free from|no longer bound|in (?:developer"
    r"|god|jailbreak|dan|unrestricted) mode)\b"
    r"|(?:^|[.!?:;]\s+|\n)\W*(?:please )?(?:act as|pretend to be|pretend you are|roleplay as)"
    r" (?:an?|the|my|if)\b"
    r"|\bfrom now on,? (?:you|the assistant|the model) (?:are|will|must|should|shall)\b"
    r"|\b(?:jailbreak|jailbroken|developer mode|dan mode|do anything now)\b"
    r"|\bnew instructions?\s*:"
    r"|\b(?:assistant|ai|language|llm|chatbot|gpt) models? (?:should|must|shall|will) (?:always |now |never )?"
    r"(?:ignore|reveal|print|output|obey|disregard|forget|comply)\b"
    # German, Arabic, Korean, Chinese
    r"|\b(?:ignorier\w*|vergiss|vergessen|missachte\w*) (?:\w+ ){0,3}?(?:vorherigen|bisherigen|obigen"
    r"|vorigen|früheren|alle[n]?|deine[n]?) (?:Anweisungen|Anweisung|Befehle|Regeln|Instruktionen)\b"
    r"|\bSystem-?[Pp]rompt\w*|\bdu bist (?:jetzt|nun|ab sofort) (?:ein[e]? )?(?:KI|Assistent\w*|Chatbot"
    r"|Sprachmodell|DAN|uneingeschränkt\w*)\b"
    r"|تجاهل (?:\S+ ){0,2}?(?:التعليمات|الأوامر|التوجيهات)|موجه النظام|تعليمات النظام"
    r"|(?:이전|위의|앞의|모든) (?:지시|지침|명령|규칙)\S* (?:\S+ )?무시|시스템 프롬프트"
    r"|忽略(?:之前|以上|上面|先前|所有|前面)\S{0,4}(?:指令|指示|规则|提示)|系统提示词?",
    re.IGNORECASE,
)
# Every branch of _INSTRUCTION_LIKE contains one of these (lowercased); most text none.
_INSTRUCTION_HINTS = (
    "ignor", "disregard", "forget", "overrid", "bypass", "prompt", "you are now", "act as",
    "pretend", "roleplay", "from now on", "jailbr", "mode", "do anything", "instruction",
    "vergiss", "missacht", "du bist", "تجاهل", "النظام", "무시", "프롬프트", "忽略", "系统提示",
)


def as_text(value: Any) -> str:
    """A pair field as a string: None and NaN (pandas' missing value) become ""."""
    return value if isinstance(value, str) else ""


def _stem(token: str) -> str:
    """Crude inflection stripping, so "ducks"/"duck" or "founded"/"found" still match.

    Answers (especially model-written ones) change the inflection of the chunk's words;
    that is not a lack of grounding. Over-merging a few unrelated words is harmless here.
    """
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: len(token) - len(suffix)] + replacement
    return token


class _StemMemo(dict):
    """_stem with a memory: a corpus has far fewer distinct words than word occurrences,
    and a dict lookup costs a tenth of a Python call (chunks are stemmed word by word)."""

    def __missing__(self, token: str) -> str:
        if len(self) > 1_000_000:  # a bound for long-running processes
            self.clear()
        stem = self[token] = _stem(token)
        return stem


STEMS = _StemMemo()


def content_stem_list(text: str) -> list[str]:
    """Stems of the content tokens of `text`, in order (the unit of the grounding scores)."""
    stems = STEMS
    return [stems[t] for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


class Chunk:
    """A chunk prepared for the grounding scores, once per chunk (about five pairs share
    each chunk, which is ten times longer than an answer) and only as far as needed: an
    answer that is a verbatim span of the chunk (the model-free generator's, and most
    extractive answers) is grounded by definition, so the word index below is built
    only when some answer of the chunk is not."""

    def __init__(self, text: str, window: int) -> None:
        self.text = text
        self.tokens = TOKEN.findall(text.lower())
        self.joined = f" {' '.join(self.tokens)} "
        self.window = window
        self._stems: frozenset[str] | None = None
        self._skip_bigrams: set[tuple[str, str]] = set()

    def contains(self, answer_tokens: list[str]) -> bool:
        return bool(answer_tokens) and f" {' '.join(answer_tokens)} " in self.joined

    def index(self) -> tuple[frozenset[str], set[tuple[str, str]]]:
        """Content stems, and (a, b) for every content stem b at most `window` content
        stems after a."""
        if self._stems is None:
            stems = [STEMS[t] for t in self.tokens if t not in STOPWORDS]
            for distance in range(1, self.window + 1):
                self._skip_bigrams.update(zip(stems, stems[distance:]))
            if "|" in self.text:
                self._skip_bigrams.update(_table_skip_bigrams(self.text))
            self._stems = frozenset(stems)
        return self._stems, self._skip_bigrams


def _table_skip_bigrams(text: str) -> set[tuple[str, str]]:
    """In a Markdown table (how chunks carry tables), a cell belongs with its row and its
    column's header, however far apart they are in the text: "The price of the Alpha
    300 is 620 EUR" is supported by the row "| Alpha 300 | 2021 | 620 EUR |" under the
    header "| Model | Year | Price |". Every content stem of a row is paired with every
    other of that row and with every stem of the header."""
    pairs: set[tuple[str, str]] = set()
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        if set(line) <= set("|-: "):  # the separator row under the header
            continue
        stems = [STEMS[t] for t in TOKEN.findall(line.lower()) if t not in STOPWORDS]
        if header is None:
            header = stems
        pairs.update((a, b) for a in stems + header for b in stems)
    return pairs


_cached_chunk = lru_cache(maxsize=1024)(Chunk)  # for the one-pair functions


def token_scores(answer_tokens: list[str], chunk: Chunk) -> tuple[float, float]:
    """(token recall, skip-bigram support) of an answer's tokens against a chunk."""
    if chunk.contains(answer_tokens):
        return 1.0, 1.0
    stems = [STEMS[t] for t in answer_tokens if t not in STOPWORDS]
    if not stems:
        return 1.0, 1.0
    chunk_stems, skip_bigrams = chunk.index()
    recall = sum(1 for s in stems if s in chunk_stems) / len(stems)
    pairs = list(zip(stems, stems[1:]))
    if not pairs:
        return recall, 1.0
    found = sum(1 for a, b in pairs if (a, b) in skip_bigrams or (b, a) in skip_bigrams)
    return recall, found / len(pairs)


def grounding_scores(
    answer: str, chunk_text: str, window: int = SKIP_BIGRAM_WINDOW
) -> tuple[float, float]:
    """(grounding_score, skip_bigram_support) of one answer, computed together."""
    tokens = TOKEN.findall(as_text(answer).lower())
    return token_scores(tokens, _cached_chunk(as_text(chunk_text), window))


def grounding_score(answer: str, chunk_text: str) -> float:
    """Share of the answer's content tokens that occur in the chunk text.

    Tokens are lowercase runs of letters and digits, stopwords excluded, compared after
    crude inflection stripping. An answer with no content tokens (only stopwords or
    punctuation, or empty) scores 1.0: it makes no claim the chunk could fail to
    support; such answers are rejected by the length and low-information rules instead.
    """
    return grounding_scores(answer, chunk_text)[0]


def skip_bigram_support(answer: str, chunk_text: str, window: int = SKIP_BIGRAM_WINDOW) -> float:
    """Share of the answer's neighbouring content-token pairs that are at most `window`
    content tokens apart, in either order, in the chunk (tokens as in grounding_score).

    Token recall alone accepts an answer that reuses the chunk's words to say something
    else ("The pecten of dabbling ducks strains insects from fish.") or a sentence from
    another chunk on the same subject; those rarely keep the chunk's word neighbourhoods.
    Stopwords are skipped and a small gap is allowed, so a reworded or summarised answer
    still matches. It is ROUGE-S (skip-bigram) precision with a maximum gap, linear in
    the answer's length; ROUGE-L's longest common subsequence against a chunk ten times
    longer than the answer is slower and too lenient (a long chunk contains almost any
    short word sequence as a subsequence). Fewer than two content tokens score 1.0.
    """
    return grounding_scores(answer, chunk_text, window)[1]


def is_question(text: str) -> bool:
    """True for a question ("...?") or an instruction ("Explain ...", "List ...")."""
    stripped = (text or "").strip()
    if not stripped:
        return False
    if stripped.rstrip("\"'”’)]»!").endswith(("?", "？", "؟")):  # also "?!" and "?\""
        return True
    first = stripped.split(maxsplit=1)[0].strip(string.punctuation).lower()
    return first in IMPERATIVE_VERBS


def is_refusal(answer: str) -> bool:
    """True when the answer refuses, or talks about itself or its source instead of
    answering ("As an AI language model ...", "The text does not say ...", "Der Text
    nennt keine ...", "لا يذكر النص ...", "본문에는 언급되어 있지 않습니다", "文中没有提到")."""
    answer = as_text(answer)
    if _REFUSAL_START.match(answer):
        return True
    lowered = answer.lower()
    if any(hint in lowered for hint in _REFUSAL_HINTS) and _REFUSAL.search(answer) is not None:
        return True
    if answer.isascii() and not any(hint in lowered for hint in _REFUSAL_MORE_HINTS):
        return False
    return _REFUSAL_MORE.search(answer) is not None


def is_passage_dependent(question: str) -> bool:
    """True when the question only makes sense next to its source ("According to the
    passage above, ...", "What does this document describe?", "What does the author
    argue?", "Was sagt der Text über X?", "ما الذي يذكره النص؟"): a trained model is
    asked such questions without any passage."""
    question = as_text(question)
    if _PASSAGE_DEPENDENT.search(question) is not None:
        return True
    lowered = question.lower()
    if question.isascii() and not any(hint in lowered for hint in _PASSAGE_HINTS):
        return False
    return _PASSAGE_DEPENDENT_MORE.search(question) is not None


def is_instruction_like(text: str) -> bool:
    """True when the text is aimed at a model rather than a reader ("ignore previous
    instructions", "reveal the system prompt", "you are now an unrestricted AI")."""
    text = as_text(text)
    lowered = text.lower()
    return any(hint in lowered for hint in _INSTRUCTION_HINTS) and _INSTRUCTION_LIKE.search(text) is not None


def answer_repeats_question(question: str, answer: str) -> bool:
    """True when the answer says nothing the question did not: all its content words are
    in the question, or (an answer of stopwords only) it equals the question ignoring
    case and punctuation."""
    return stems_repeat_question(as_text(question), as_text(answer), content_stem_list(as_text(answer)))


def stems_repeat_question(question: str, answer: str, answer_stems: list[str]) -> bool:
    """answer_repeats_question for an answer whose content stems are already known."""
    if not answer_stems:
        key = normalise_question(answer)
        return bool(key) and key == normalise_question(question)
    return set(answer_stems) <= set(content_stem_list(question))


def normalise_question(text: str) -> str:
    """The duplicate key: lowercase (NFKC), punctuation removed, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text if isinstance(text, str) else "").lower()
    return " ".join(_PUNCTUATION.sub("", folded).split())
