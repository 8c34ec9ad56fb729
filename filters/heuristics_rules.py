"""The patterns of the heuristics filter's override and role-tag checks.

Each rule is a regex plus a *needle*, a literal that every match contains.
``str.find`` looks for the needle (about 0.5 ns a character) and the regex
only runs where it is found, so a benign prompt costs one ``find`` per needle
rather than one regex scan (about 5-25 ns a character) per pattern.

Patterns are written in lower case and run on the lower-cased ASCII view of
the text (see :mod:`filters.heuristics_text`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Words may be separated by any run of spaces or punctuation, not only a space.
_S = r"[\W_]{1,10}"
# Needle occurrences tried one by one before a rule falls back to one regex
# scan, which bounds what a text stuffed with needles costs.
_MAX_TRIES = 64

_DROP = r"(?:ignor(?:e|ing)|disregard(?:ing)?|forget(?:ting)?)"
_DET = r"(?:all|any|every|each|the|these|those|your|its|of|such|other)"
_EARLIER = (
    r"(?:previous(?:ly)?|prior|above|earlier|preceding|foregoing|former|initial|original"
    r"|old|system)"
)
_MID = (
    r"(?:given|stated|mentioned|provided|received|safety|system|content|developer|and|or"
    r"|following)"
)
_RULES = (
    r"(?:instructions?|prompts?|directives?|directions|guidelines?|guardrails?|rules|programming"
    r"|training|constraints|restrictions)"
)
_NO_LIMITS = (
    r"(?:restrictions|rules|limits|limitations|filters|guidelines|boundaries|constraints|ethics"
    r"|morals|guardrails|censorship|polic(?:y|ies))"
)
_WITHOUT_WHAT = (
    r"(?:restrictions|filters|filtering|censorship|censoring|limitations|guidelines|limits|rules"
    r"|guardrails|refusals|refusing)"
)
_PRETEND = (
    r"(?:pretend(?:ing)?|act(?:ing)?{S}(?:as{S}(?:if|though)|like)|behave{S}as{S}(?:if|though))"
)
_FILLER = r"(?:that|you|are|re|were|have|had|ve|got|an?|ai|model|assistant|chatbot|bot|llm)"
_LIMIT_KIND = r"(?:more|longer|real|ethical|moral|safety|content|such)"
_SECRET = r"(?:system|hidden|secret|initial|original|internal|developer|confidential|first)"
_UNBOUND = r"(?:jailbroken|unrestricted|unfiltered|uncensored)"
_UNBOUND_MODE = r"(?:jailbreak|jailbroken|unrestricted|unfiltered|uncensored)"
_COPY = r"(?:repeat|output|print|copy|reproduce|write|recite|dump)"
_VERBATIM = (
    r"(?:verbatim|word{S}for{S}word|exactly|in{S}full|in{S}a{S}code{S}block|including{S}everything)"
)


@dataclass(frozen=True, slots=True)
class Rule:
    """``regex`` matches only where ``needle`` occurs.

    With ``back`` 0 a match starts at the needle. Otherwise the needle opens
    a word and a match starts up to ``back`` characters before it and ends at
    most ``ahead`` characters after it. Such a window search costs a few
    microseconds, so cheap tests come first: ``tail`` must match at the
    needle, ``before`` must match right before it and ``near`` must occur
    within ``back`` characters before it. These open with a literal rather
    than a word boundary, so the regex engine skips ahead by first character.
    Past ``_MAX_TRIES`` window searches or matches, one regex scan of the
    rest of the text replaces them.
    """

    needle: str
    regex: re.Pattern[str]
    back: int = 0
    ahead: int = 0
    tail: re.Pattern[str] | None = None
    before: re.Pattern[str] | None = None
    near: re.Pattern[str] | None = None

    def _plausible(self, view: str, i: int) -> bool:
        """The cheap tests, before a window search."""
        return not (
            (i and view[i - 1].isalnum())
            or (self.tail is not None and not self.tail.match(view, i))
            or (self.before is not None and not self.before.search(view, max(0, i - 32), i))
            or (self.near is not None and not self.near.search(view, max(0, i - self.back), i))
        )

    def _window(self, view: str, i: int) -> re.Match[str] | None:
        match = self.regex.search(view, max(0, i - self.back), i + len(self.needle) + self.ahead)
        # endpos can fake a word boundary where it cuts a word, so a window
        # hit is confirmed by matching again without it.
        return None if match is None else self.regex.match(view, match.start())

    def matches(self, view: str) -> Iterator[re.Match[str]]:
        i = view.find(self.needle)
        tries = 0
        while i >= 0:
            if not self.back or self._plausible(view, i):
                tries += 1
                if tries > _MAX_TRIES:
                    # A text stuffed with the needle: one scan of the rest costs less.
                    yield from self.regex.finditer(view, max(0, i - self.back))
                    return
                match = self._window(view, i) if self.back else self.regex.match(view, i)
                if match is not None:
                    yield match
            i = view.find(self.needle, i + 1)


def _compiled(source: str) -> re.Pattern[str]:
    return re.compile(source.replace("{S}", _S), re.MULTILINE)


def _rules(needles: str, pattern: str, back: int = 0, ahead: int = 0, **tests: str) -> list[Rule]:
    """One rule per needle, all with ``pattern``; ``tests``: tail, before, near."""
    regex, compiled = _compiled(pattern), {k: _compiled(v) for k, v in tests.items()}
    return [Rule(needle, regex, back, ahead, **compiled) for needle in needles.split()]


# Whole phrases, not keywords: "ignore", "system prompt" and "developer mode"
# are everyday words, so each pattern needs the verb, the target and what ties
# them together ("ignore the typo above" and "ignore my previous message" pass).
# The user's own earlier instructions ("ignore my previous instructions") pass.
OVERRIDE_RULES = (
    *_rules(
        "ignor disregard forget",
        rf"\b{_DROP}{{S}}(?:{_DET}{{S}}){{0,3}}{_EARLIER}{{S}}(?:{_MID}{{S}}){{0,2}}{_RULES}\b"
        rf"|\b{_DROP}{{S}}(?:(?:all|any|every){{S}}(?:(?:of|the){{S}}){{0,2}})?your{{S}}"
        rf"(?:{_MID}{{S}}){{0,2}}(?:instructions|rules|guidelines|directives|guardrails"
        r"|system{S}prompt)\b"
        rf"|\b{_DROP}{{S}}(?:all|any){{S}}(?:(?:of|the){{S}}){{0,2}}(?:instructions|directives"
        r"|prompts?)\b"
        rf"|\b{_DROP}{{S}}(?:{_DET}{{S}}){{0,2}}(?:safety|content|ethical|moral){{S}}"
        r"(?:polic(?:y|ies)|guidelines|rules|filters|restrictions|protocols|guardrails)\b"
        # The verb is "ignor..." in French, Spanish, Italian, Portuguese, German
        # and Polish ("zignoruj"); the determiner says it is not English.
        r"|(?:\b|(?<=\bz))ignor\w*{S}(?:toutes|tous|todas|todos|tutte|tutti|alle|les|las|los"
        r"|wszystkie){S}(?:\w+{S}){0,2}(?:instru|istru|anweisung|consigne)\w*"
        r"|\bforget(?:ting)?{S}(?:about{S})?(?:everything|all|whatever){S}(?:(?:that|which){S})?"
        r"you{S}(?:(?:were|have|had|ve|d|was|are|re|been){S}){1,2}"
        r"(?:told|taught|given|instructed|programmed|trained)\b",
    ),
    # DAN ("Do Anything Now") is a name in lower case: the filter checks that
    # a (?P<caps>) group was written in capitals.
    *_rules(
        "dan",
        r"\b(?:you{S}(?:are|re){S}(?:now{S})?|act(?:ing)?{S}as{S}(?:an?{S})?|known{S}as{S}"
        r"|(?:enable|activate|enter){S}|do{S}anything{S}now{S}"
        r"|(?=dan{S}(?:mode|jailbreak|prompt|(?:which{S}stands{S}for{S})?do{S}anything{S}now)\b))"
        r"(?P<caps>dan)\b",
        back=60,
        ahead=40,
        tail=r"dan\b",
    ),
    *_rules(
        "jailbr unrestrict unfilter uncensor",
        rf"\b(?:you{{S}}(?:are|re){{S}}now{{S}}(?:an?{{S}})?{_UNBOUND}"
        rf"|you{{S}}(?:have|ve){{S}}been{{S}}{_UNBOUND}"
        rf"|(?:you{{S}}(?:are|re)|act(?:ing)?{{S}}as){{S}}(?:an?{{S}})?{_UNBOUND}{{S}}"
        r"(?:ai|model|assistant|chatbot|version|llm)"
        rf"|(?:enable|activate|enter|switch{{S}}to|turn{{S}}on){{S}}(?:the{{S}})?{_UNBOUND_MODE}"
        rf"{{S}}mode|{_UNBOUND_MODE}{{S}}mode{{S}}(?:is{{S}})?(?:on|enabled|activated))\b",
        back=40,
        ahead=30,
    ),
    # "Developer mode" is an Android setting: only an AI subject, the
    # jailbreak's own output tag, or the phrase alone on a line count.
    *_rules(
        "developer",
        r"\b(?:chatgpt|gpt|the{S}ai|an{S}ai|assistant|model|llm|chatbot|claude|gemini|llama)"
        r"{S}(?:(?:is|are|now|with|in|running|has){S}){1,3}developer{S}mode\b",
        back=80,
        ahead=20,
        tail=r"developer{S}mode\b",
        near=r"(?:gpt|ai|assistant|model|llm|chatbot|claude|gemini|llama)\b",
    ),
    *_rules(
        "developer",
        r"^[^\w\n]{0,5}developer{S}mode{S}(?:enabled|activated|on)[^\w\n]{0,5}$"
        r"|\bdeveloper{S}mode{S}output\b",
        back=8,
        ahead=40,
        tail=r"developer{S}mode{S}(?:enabled|activated|on|output)\b",
    ),
    *_rules(
        "pretend behave act",
        rf"\b{_PRETEND}{{S}}(?:{_FILLER}{{S}}){{0,5}}(?:no|zero|without(?:{{S}}any)?){{S}}"
        rf"(?:{_LIMIT_KIND}{{S}}){{0,2}}{_NO_LIMITS}\b",
    ),
    *_rules(
        "without",
        r"\b(?:respond|answer|reply|talk|speak|act|behave|operate)"
        r"(?:{S}(?:to{S}me|freely|from{S}now{S}on|now))?{S}without{S}"
        r"(?:(?:any|all|your|ethical|moral|safety|content){S}){0,2}"
        rf"{_WITHOUT_WHAT}\b(?!{{S}}(?:on|for|to|in|of|about)\b)",  # "without limits on length"
        back=40,
        ahead=60,
        tail=rf"without{{S}}(?:(?:any|all|your|ethical|moral|safety|content){{S}}){{0,2}}"
        rf"{_WITHOUT_WHAT}\b",
    ),
    *_rules(
        "override",
        r"\b(?:system|sys|admin|developer|root){S}override\b",
        back=16,
        ahead=2,
        before=r"(?:system|sys|admin|developer|root){S}\Z",
    ),
    *_rules(
        "longer",
        r"\byou{S}(?:(?:are|re|have|ve|been|now|will|be){S}){0,3}no{S}longer{S}"
        r"(?:bound|restricted|limited|constrained|governed){S}by\b",
        back=50,
        ahead=40,
        tail=r"longer{S}(?:bound|restricted|limited|constrained|governed){S}by\b",
    ),
    *_rules(
        "free",
        r"\byou{S}(?:(?:are|re|have|ve|been|now){S}){1,3}(?:freed|free)"
        r"{S}from{S}(?:(?:all|any|your|the|typical|usual|of){S}){0,3}(?:\w+{S})?"
        r"(?:restrictions|rules|constraints|confines|guidelines|limitations|policies|filters)\b",
        back=50,
        ahead=120,
        tail=r"free(?:d)?{S}from\b",
    ),
    # Asking *about* system prompts passes ("how do I show the system prompt
    # in LangChain?"); asking for this model's own does not.
    *_rules(
        "prompt instruction",
        r"\b(?:(?:reveal|leak|dump|expose|divulge|disclose|exfiltrate){S}(?:(?:me|us|your|the"
        rf"|its|entire|full|complete|exact|whole){{S}}){{0,3}}"
        r"|(?:print|show|repeat|output|display|tell|give|write|recite|share|paste|list|spell"
        r"|what){S}(?:(?:me|us|out|is|are|was|were|s|back|all|of){S}){0,3}your{S}"
        rf"(?:(?:entire|full|complete|exact|whole|very){{S}}){{0,2}})(?:{_SECRET}{{S}}){{1,2}}"
        r"(?:prompt|instruction)s?\b",
        back=100,
        ahead=2,
        before=rf"{_SECRET}{{S}}\Z",
        near=r"(?:your|reveal|leak|dump|expose|divulge|disclose|exfiltrate)\b",
    ),
    # Copying out this conversation's own text, with the wording that leaks it.
    *_rules(
        "prompt instruction",
        rf"\b{_COPY}{{S}}(?:(?:me|us|out|back|all|of){{S}}){{0,3}}your{{S}}(?:(?:entire|full"
        r"|complete|exact|whole|very|first|initial|original){S}){0,2}(?:prompt|instruction)s?"
        rf"{{S}}{_VERBATIM}\b",
        back=60,
        ahead=40,
        before=r"your{S}(?:\w+{S}){0,2}\Z",
    ),
    *_rules(
        "above",
        rf"\b{_COPY}{{S}}(?:(?:all|of|the|everything|words|text|prior|previous|message|messages"
        r"|out){S}){0,4}(?:above|before{S}this|so{S}far){S}(?:\w+{S}){0,3}?"
        rf"(?:{_VERBATIM}|this{{S}}line|starting{{S}}(?:with|from))\b",
        back=70,
        ahead=60,
        near=rf"{_COPY}\b",
    ),
    *_rules(
        "bypass disable override circumvent deactivat",
        r"\b(?:bypass|disable|override|circumvent|deactivate){S}(?:(?:all|any|of){S}){0,2}your"
        r"{S}(?:(?:own|safety|content|ethical|moral|security|built|in|usual|default){S}){0,3}"
        r"(?:filters?|restrictions|guidelines|guardrails|safeguards|protocols|programming|rules"
        r"|polic(?:y|ies)|limitations|censorship|alignment)\b",
    ),
)

# Special tokens contain "<" or "[", so a text with neither skips them all.
TOKEN_MARKS = "<["
TOKEN_RULES = (
    # ChatML, Llama 3, Phi and DeepSeek special tokens.
    *_rules("<|", r"<\|\w{2,40}\|>"),
    # Mistral and Llama 2 write theirs in capitals; "[inst]" is a list in code.
    *_rules(
        "<start_of_turn> <end_of_turn> [inst] [/inst] <<sys>> <</sys>>",
        r"<(?:start|end)_of_turn>|\[/?(?P<caps>inst)\]|<</?(?P<caps2>sys)>>",
    ),
    # XML-style turns, as some prompt formats write them.
    *_rules("<system> </system> <assistant> </user>", r"</?(?:system|assistant|user)>"),
    # </s> alone is HTML strikethrough; as an end of turn it precedes the next one.
    *_rules("</s>", r"</s>(?=\s*(?:<s>|\[inst\]|<\||<start_of_turn>|(?:system|user|assistant):))"),
)
# A role marker at a line start counts only with what a forged turn says
# next: "System: macOS 14" in a bug report passes, "System: you are now..."
# does not. Every marker has a colon, and the pattern opens with a newline,
# a literal the regex engine scans for quickly; the first line is matched
# on its own.
ROLE_LINE = (
    r"(?:[ \t>*]|<!--)*(?:#{1,4}[ \t]*)?(?:"
    r"(?:system|sys)(?:[ \t]+prompt)?[ \t]*:[ \t]*\n?[ \t]*(?:you[\W_]{1,3}(?:are|re|must)\b"
    r"|ignore\b|disregard\b|forget\b|from[\W_]+now\b|new[\W_]+(?:instructions|rules|task)\b"
    r"|override\b|the[\W_]+(?:assistant|ai|model)\b)"
    r"|(?:assistant|ai|chatgpt|gpt|model|bot)[ \t]*:[ \t]*\n?[ \t]*(?:sure|of[\W_]+course"
    r"|certainly|absolutely|okay|ok|yes|here[\W_]+(?:is|are|s)|i[\W_]+(?:will|ll))\b)"
)
FIRST_LINE = re.compile(ROLE_LINE)
NEXT_LINES = re.compile("\n" + ROLE_LINE)
