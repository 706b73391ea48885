"""Pure-Python reproduction of the tokenization that pycocoevalcap applies before scoring captions.

pycocoevalcap pipes every caption through Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase``
(a JFlex lexer, run in a fresh JVM per call) and then drops the tokens in :data:`PUNCTUATIONS`. This module
re-implements the lexer rules that matter once those tokens are dropped: which periods stay on a word
(abbreviations, acronyms), contractions (``n't``, ``'s``), brackets (``-lrb-``, which pycocoevalcap keeps because
its list is upper case), currency and fraction normalisation, grouped ``!!!``/``?!``, and the deletion of
characters outside the Basic Multilingual Plane (emoji), which the Java lexer cannot tokenize.
The rules were checked token for token against the bundled jar (see ``tests/test_captions.py``).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

__all__ = ["PUNCTUATIONS", "ptb_tokens", "tokenize_caption", "tokenize_caption_full", "tokenize_corpus"]

#: Tokens removed after tokenization, exactly pycocoevalcap's list (note the upper-case bracket names: the
#: lower-cased ``-lrb-`` that -lowerCase produces is therefore kept).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Words that keep their final period in any context (CoreNLP 3.4.1 ABBREV1/ABBREV2 lists, as observed
# on the bundled jar; matched case-insensitively like -lowerCase output).
_ABBREV_ALWAYS = frozenset(
    """
mr mrs ms messrs mlle mme dr drs prof profs gen sen sens rep reps gov lt col capt cmdr adm sgt maj rev hon
jr sr inc ltd corp co cos bros esq etc vs st ste mt ft fr ave rd blvd dept univ assn sq est ext al cf gov't
jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri
ala ariz ark calif colo conn fla ga ind kan kans ky md mich minn mo mont neb nev okla ore penn tenn va vt
wis wisc wyo
""".split()
)
# State abbreviations that are also words keep their period only when capitalised ("Mass." but "mass .").
_ABBREV_CAPITALISED = frozenset("Miss Mass Wash Pa La Ill Del Tex".split())
# Words that keep their period only before a number ("No. 5", "fig. 3", "pp. 10").
_ABBREV_BEFORE_NUMBER = frozenset(
    "no nos fig figs pp ca art arts sec sect secs ch chs p op prop approx".split()
)

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_CURRENCY = {"£": "#", "€": "$", "¢": "cents"}
_FRACTIONS = {"½": "1/2", "¼": "1/4", "¾": "3/4", "⅓": "1/3", "⅔": "2/3"}
_QUOTE_DOUBLE = '"“”«»'
_QUOTE_SINGLE = "'‘’`"


def _mark_ranges() -> str:
    """Regex ranges of the BMP combining marks (Mn, Mc, Me): the lexer keeps them inside words (Persian, Hindi)."""
    import unicodedata

    out, start, prev = [], None, None
    for cp in range(0x10000):
        if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me"):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append(f"\\u{start:04x}-\\u{prev:04x}")
            start = None
    return "".join(out)


# A word character: letters, digits, the underscore (the lexer keeps foo_bar whole) and combining marks.
_W = "(?:[^\\W_]|[" + _mark_ranges() + "])"
# Alternatives of the lexer, in priority order, each with the character the text must contain for it to match
# at all (None: always possible). Lines without '@', '/', '<' or '&' use a pattern without those branches, which
# cannot match there anyway; that keeps the common caption on a short alternation (about 3x faster).
_BRANCHES: list[tuple[str | None, str]] = [
    ("/", r"""(?P<url>(?:https?|ftp)://[^\s"<>()\[\]{}]*[^\s"<>()\[\]{}.,;:!?'])"""),
    ("www.", r"""(?P<www>www\.[^\s"<>()\[\]{}]*[^\s"<>()\[\]{}.,;:!?'])"""),
    ("@", r"""(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"""),
    ("<", r"""(?P<sgml></?[A-Za-z!?][^<>\s]*>)"""),
    (None, r"""(?P<snum>(?<!\w)[-+]\d+(?:[.,]\d+)*(?!\w))"""),
    ("/", r"""(?P<frac>(?:\d+\u00a0)?\d+/\d+(?![\w/]))"""),
    ("/", r"""(?P<slash>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)+)"""),
    (None, r"""(?P<num>\d+(?:[.,:]\d+)+)"""),
    (None, r"""(?P<acro>(?:[^\W\d_]\.){2,}|[^\W\d_]\.(?=\s|$))"""),
    ("&", r"""(?P<amp>[A-Z]+&[A-Z]+(?![\w]))"""),
    (None, r"""(?P<aponum>'\d\d?s?(?![\w]))"""),
    (None, r"""(?P<word>[#@]?W+(?:(?:[-.'’]|_+|&(?=[A-Z]))W+)*)""".replace("W+", _W + "+")),
    (None, r"""(?P<unds>_+)"""),
    (None, r"""(?P<asts>\*+)"""),
    (None, r"""(?P<ldots>\.{3,}|…)"""),
    (None, r"""(?P<bang>[?!]+)"""),
    (None, r"""(?P<dash>--+|[—–])"""),
    (None, r"""(?P<dquote>``|''|["“”«»])"""),
    (None, r"""(?P<squote>['‘’`])"""),
    (None, r"""(?P<other>\S)"""),
]


@cache
def _pattern(present: frozenset[str]) -> re.Pattern[str]:
    return re.compile("|".join(rx for need, rx in _BRANCHES if need is None or need in present))


def _word_pattern(text: str) -> re.Pattern[str]:
    return _pattern(frozenset(need for need, _ in _BRANCHES if need is not None and need in text))


_CONTRACTION = re.compile(r"^(.*\w)(n['’]t|['’](?:s|re|ve|ll|m|d))$", re.IGNORECASE)
_ASSIMILATION = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "gimme": ("gim", "me"),
    "lemme": ("lem", "me"),
}


def _split_word(word: str) -> list[str]:
    """Split contractions off a word: "can't" -> ca n't, "she'd've" -> she 'd 've, "cannot" -> can not."""
    low = word.lower()
    if low in _ASSIMILATION:
        return list(_ASSIMILATION[low])
    if low in ("'tis", "'twas", "’tis", "’twas"):
        return ["'t", word[2:]]
    tail: list[str] = []
    while True:
        m = _CONTRACTION.match(word)
        if m is None:
            break
        word, suffix = m.group(1), m.group(2).replace("’", "'")
        tail.insert(0, suffix)
    return [*_split_apostrophes(word), *tail]


# Words whose inner apostrophe the lexer keeps (its APOWORD rule): l'eau, d'ivoire, O'Neil, ma'am-like
# vowel-apostrophe-vowel words, and a few listed words.
_APOWORD = re.compile(
    r"^(?:[lLdDjJ]['’]\w+|[A-HJ-XZn]['’][^\W\d_]{2,}\w*|\w*[aeiouyAEIOUY]['’][aeiouA-Z]\w*"
    r"|o['’]clock|c['’]mon|nor['’]easter|e['’]er|s['’]mores|ev['’]ry|li['’]l|nat['’]l|cont['’]d)$"
)


def _split_apostrophes(word: str) -> list[str]:
    """Keep APOWORD words whole; otherwise an inner apostrophe is a quote token between two words."""
    if ("'" not in word and "’" not in word) or _APOWORD.match(word):
        return [word]
    parts = re.split(r"(['’])", word)
    return [p if p not in ("'", "’") else "'" for p in parts if p]


def _next_is_number(text: str, end: int) -> bool:
    m = re.match(r"\s+\d", text[end:])
    return m is not None


@cache
def _astral() -> re.Pattern[str]:
    return re.compile("[\U00010000-\U0010ffff]")


def ptb_tokens(line: str) -> list[str]:
    """Tokens of one line as ``PTBTokenizer -preserveLines -lowerCase`` (CoreNLP 3.4.1) gives them, lower-cased."""
    text = _astral().sub("", line)
    # "3 1/2": the lexer joins a whole number and a fraction with a no-break space.
    text = re.sub(r"(?<![\w.,/])(\d+) (\d+/\d+)(?![\w/])", "\\1\u00a0\\2", text)
    out: list[str] = []
    for m in _word_pattern(text).finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind == "word":
            # A word followed by a period: keep the period when it is an abbreviation.
            end = m.end()
            if end < len(text) and text[end] == "." and not text.startswith("..", end):
                key = tok.lower()
                if (
                    key in _ABBREV_ALWAYS
                    or tok in _ABBREV_CAPITALISED
                    or (key in _ABBREV_BEFORE_NUMBER and _next_is_number(text, end + 1))
                ):
                    out.append(tok.lower() + ".")
                    # swallow the period: mark position by a sentinel handled below
                    out.append("\x00")
                    continue
            if tok[0].isdigit() and re.match(r"^\d+\.\d", tok):
                num = re.match(r"^\d+(?:\.\d+)+", tok).group()  # type: ignore[union-attr]  # matched above
                out.extend([num.lower(), tok[len(num) :].lower()])
                continue
            out.extend(t.lower() for t in _split_word(tok))
        elif kind == "frac":
            out.append(tok)
        elif kind in (
            "unds",
            "asts",
            "num",
            "snum",
            "slash",
            "url",
            "www",
            "email",
            "sgml",
            "amp",
            "aponum",
            "acro",
        ):
            out.append(tok.lower())
        elif kind == "ldots":
            out.append("...")
        elif kind == "bang":
            out.append(tok)
        elif kind == "dash":
            out.append(tok if tok.startswith("---") else "--")
        elif kind == "dquote":
            out.append("``")
        elif kind == "squote":
            out.append("'")
        else:
            if tok in _BRACKETS:
                out.append(_BRACKETS[tok].lower())
            elif tok in _CURRENCY:
                out.append(_CURRENCY[tok])
            elif tok in _FRACTIONS:
                out.append(_FRACTIONS[tok])
            else:
                out.append(tok.lower())
    # Drop the periods swallowed by abbreviations.
    res: list[str] = []
    skip = False
    for t in out:
        if t == "\x00":
            skip = True
            continue
        if skip and t == ".":
            skip = False
            continue
        skip = False
        res.append(t)
    return res


# Control characters (C0, DEL, C1) and the zero-width space and BOM: the Java lexer deletes them as
# untokenizable, and each ends the token it interrupts ("dog\x01runs" -> "dog runs"), so they become spaces.
# Some of them (\v, \f, \x0e-\x11, \r) also break pycocoevalcap's one-caption-per-line protocol, which then
# pairs captions with the wrong lines; dropping them is what that pipeline means to do. One exception: the
# lexer reads U+0080 as the euro sign (its Windows-1252 meaning), which becomes "$" like every euro sign.
_CONTROL_TO_SPACE = {c: " " for c in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x200B, 0xFEFF]}
_CONTROL_TO_SPACE[0x80] = "\u20ac"


def _clean(caption: str) -> str:
    text = caption.replace("\n", " ")
    return text if text.isprintable() else text.translate(_CONTROL_TO_SPACE)


def tokenize_caption_full(caption: str) -> str:
    """:func:`tokenize_caption` computed by running the lexer over the whole line (the slow reference path)."""
    return " ".join(t for t in ptb_tokens(_clean(caption)) if t not in PUNCTUATIONS)


# Fast path. No lexer rule matches across whitespace (every branch excludes \s, and Python's \s is exactly
# str.isspace, which str.split() uses), and the lookarounds at a token's edge (``(?<!\w)``, ``(?=\s|$)``,
# ``(?!\w)``) see the same thing (not a word character) at a chunk edge as at a space. So a line's tokens are the
# concatenation of its whitespace chunks' tokens, each chunk lexed alone (and cached), EXCEPT where the lexer
# looks past a space: the "3 1/2" no-break-space join (needs a '/') and "No. 5"-style abbreviations whose period
# is kept only before a number. Lines that might contain either go through the full lexer.
_CROSS_CHUNK = re.compile(r"(?i)(?:" + "|".join(sorted(_ABBREV_BEFORE_NUMBER)) + r")\.\s+\d")
_PERIOD_NUMBER = re.compile(r"\.\s+\d")  # cheap pre-check: the case-insensitive alternation is ~50x slower
_FRACTION_JOIN = re.compile(r"\d\s\d+/")
# A chunk made of opening brackets/quotes, a core of ASCII letters and digits (hyphens and apostrophes allowed
# between them: "two-year-old", "man's"), then a period alone or closing brackets, quotes and , ; : ? ! . marks.
# The lexer reads the core as one word token: no earlier branch can match there without a '.', '/', '@', '<',
# '&', a leading '+'/'-' or a '.,:' between digits, and the word branch runs over letters, digits and inner
# '-'/"'" greedily. No token of the prefix or the suffix can grow into the core (each of those characters
# starts a one-character token, or a run of its own kind such as ``, '', ?!, ...), except "'" before a digit
# ("'99"), which is excluded. So prefix, core and suffix are lexed apart, the core exactly as the lexer treats a
# word (_split_word). The one contextual rule left is a period right after the core (kept on an abbreviation;
# a single letter plus period is an acronym), hence the period-alone suffix.
_OPEN = "([{\"'`"
_CLOSE = ")]}\"'`,;:?!"
_SIMPLE_CHUNK = re.compile(
    f"([{re.escape(_OPEN)}]*)([A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*)"
    f"(\\.|[{re.escape(_CLOSE)}][{re.escape(_CLOSE)}.]*)?"
)
_chunk_cache: dict[str, str] = {}
_CHUNK_CACHE_MAX = 1_000_000


@lru_cache(maxsize=4096)
def _lex(text: str) -> str:
    """Tokenized form (punctuation removed, space-joined) of a text run through the full lexer."""
    return " ".join(t for t in ptb_tokens(text) if t not in PUNCTUATIONS)


def _chunk(chunk: str) -> str:
    """Tokenized form of one whitespace-free chunk (same as the full lexer, see _SIMPLE_CHUNK)."""
    if chunk.isascii() and chunk.isalpha():  # the commonest chunk, a plain word: _split_word only lower-cases it
        low = chunk.lower()
        pair = _ASSIMILATION.get(low)
        return low if pair is None else " ".join(pair)
    m = _SIMPLE_CHUNK.fullmatch(chunk)
    if m is None or (m.group(1).endswith("'") and m.group(2)[0].isdigit()):
        return (
            _lex(chunk)
            if len(chunk) < 64
            else " ".join(t for t in ptb_tokens(chunk) if t not in PUNCTUATIONS)
        )
    pre, core, post = m.groups()
    low = core.lower()
    if post == "." and (
        (len(core) == 1 and core.isalpha()) or low in _ABBREV_ALWAYS or core in _ABBREV_CAPITALISED
    ):
        mid = low + "."
    else:
        # "No. 5"-style abbreviations need a following number, i.e. another chunk: such lines never get here.
        mid = " ".join(t for t in map(str.lower, _split_word(core)) if t not in PUNCTUATIONS)
    parts = [_lex(pre) if pre else "", mid, _lex(post) if post and post != "." else ""]
    return " ".join(p for p in parts if p)


def tokenize_caption(caption: str) -> str:
    """pycocoevalcap's tokenized form of one caption: PTB tokens, lower-cased, punctuation removed, space-joined."""
    text = _clean(caption)
    if not text.isascii():
        text = _astral().sub("", text)  # the lexer deletes astral characters before anything else
    if ("/" in text and _FRACTION_JOIN.search(text)) or (
        _PERIOD_NUMBER.search(text) and _CROSS_CHUNK.search(text)
    ):
        return tokenize_caption_full(text)
    chunks = text.split()
    cache = _chunk_cache
    try:
        return " ".join(filter(None, map(cache.__getitem__, chunks)))
    except KeyError:
        if len(cache) > _CHUNK_CACHE_MAX:
            cache.clear()
        for c in chunks:
            if c not in cache:
                cache[c] = _chunk(c)
        return " ".join(filter(None, [cache[c] for c in chunks]))


def tokenize_corpus(captions: dict[object, list[str]]) -> dict[object, list[str]]:
    """Tokenize every caption of ``{id: [caption, ...]}`` like ``PTBTokenizer().tokenize`` does."""
    return {k: [tokenize_caption(c) for c in v] for k, v in captions.items()}
