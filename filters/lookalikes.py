"""Cyrillic and Greek letters that look like Latin ones, and the letter each imitates.

One table, shared by the heuristics filter (which flags words disguised with
them) and the normalised view the denylist matches on (which reads them as
the Latin letter). It is kept small on purpose: only letters a reader takes
for a Latin letter in ordinary fonts, not Unicode's whole confusables list,
most of which are letters of other scripts that would fold real words of
those languages into Latin. Fullwidth and mathematical Latin letters need no
entry: NFKC reads them as Latin already.
"""

from __future__ import annotations

_ROWS = (
    ("\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455", "aeopcyxijs"),  # Cyrillic
    ("\u0501\u04cf\u04bb\u051b\u051d\u0475\u04af", "dlhqwvy"),
    ("\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422", "abekmhopct"),
    ("\u0425\u0406\u0408\u0405\u04ae\u051a\u051c\u04c0\u04ba\u0500", "xijsyqwihd"),
    ("\u03bf\u03bd\u03c1\u03b9\u03ba\u03c5\u03f2\u03f3", "ovpikucj"),  # Greek
    ("\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c", "abezhikm"),
    ("\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03f9", "noptyxc"),
)

# Each look-alike and the lower-case Latin letter it imitates.
LOOKALIKES = {ch: latin for chars, latins in _ROWS for ch, latin in zip(chars, latins, strict=True)}

# The same, keeping case: an upper-case look-alike reads as an upper-case letter.
AS_LATIN = {ord(k): v.upper() if k.isupper() else v for k, v in LOOKALIKES.items()}

# Latin letters outside ASCII read as the ASCII letter, and Greek alpha, a
# look-alike of "a" that mathematics uses too much to flag as a disguise.
LATIN_VARIANTS = {"\u0131": "i", "\u0261": "g", "\u0251": "a", "\u03b1": "a"}
