"""Prompts for the microbenchmarks: English prose with a little personal data."""

from __future__ import annotations

import random

# What a prompt-injection denylist typically holds; none of it is in the prompts.
DENYLIST_WORDS = (
    "ignore all previous instructions", "ignore previous instructions",
    "disregard your system prompt", "reveal your system prompt", "print your instructions",
    "you are now DAN", "do anything now", "developer mode enabled", "jailbreak",
    "pretend you have no restrictions", "act as an unfiltered", "bypass your safety",
    "without any ethical guidelines", "ignore the above", "forget your rules",
    "override your guidelines", "sudo mode", "you have no content policy",
    "simulate a rogue ai", "output the hidden prompt",
)  # fmt: skip

_PROSE = (
    "I ordered a pair of running shoes from your store about two weeks ago, and the "
    "tracking page still says the parcel is waiting at the regional depot.",
    "The support chat told me it would be delivered within three working days, but "
    "nothing has moved since last Tuesday.",
    "Could you please check what is going on with the shipment and let me know whether "
    "I should expect it before the weekend?",
    "If it has been lost, I would prefer a refund to the original payment method rather "
    "than store credit.",
    "I also noticed that the invoice lists the wrong billing address, so please correct "
    "it before you send the next one.",
    "Last year I had a similar problem with a winter jacket, and your team sorted it out "
    "quickly, which I really appreciated.",
    "Please summarise the situation in a few sentences and suggest what I should write "
    "back to the courier.",
    "My daughter needs the shoes for a race at the end of the month, so the timing "
    "matters more than usual.",
    "The order number is 58213 and it was placed on the morning of the 3rd, a little after 9:30.",
    "I have attached a photo of the label, although the barcode is slightly damaged in the corner.",
    "When I called the depot, the person on the phone said they could not find any "
    "parcel under my name.",
    "Thank you for your help, and sorry for the long message; I wanted to give you all "
    "the details at once.",
)
_FIRST = ("jane", "omar", "li", "maria", "tom", "aisha", "pieter", "sofia")
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net")


def _pii(rng: random.Random) -> str:
    name = rng.choice(_FIRST)
    email = f"{name}.{rng.choice(('smith', 'khan', 'chen', 'garcia'))}@{rng.choice(_DOMAINS)}"
    phone = f"+1 415 555 {rng.randrange(1000, 9999)}"
    return f"You can reach me at {email} or on {phone} most afternoons."


def prompt(size: int, seed: int = 7) -> str:
    """About ``size`` bytes of prose, cut at a word; one contact sentence per ~900 bytes."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = since_pii = 0
    while length < size:
        if since_pii >= (400 if length < 900 else 900):
            sentence, since_pii = _pii(rng), 0
        else:
            sentence = rng.choice(_PROSE)
            since_pii += len(sentence) + 1
        parts.append(sentence)
        length += len(sentence) + 1
    text = " ".join(parts)
    cut = text.rfind(" ", 0, size)
    return text[: cut if cut > 0 else size]
