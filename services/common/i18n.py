"""The one catalogue every service's words live in
(services/common/translations; `make translations-update` extracts them).
Web pages translate through Flask-Babel (`_`, `_l`); a worker renders a
message in its recipient's language with no request to take a locale from,
so `translate` reads the same catalogue by the contract's language code.

Source strings are English; zh-CN, the community's language, is the default
everywhere and comes from the catalogue."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.support import NullTranslations, Translations

CATALOGUE = Path(__file__).with_name("translations")
# The contract's language codes (contract.LANGUAGES) → the catalogue's locales.
LOCALES = {"zh-CN": "zh_Hans_CN"}


def N_(text: str) -> str:
    """Marks a string for the catalogue; it is translated where it is shown."""
    return text


@cache
def _translations(language: str) -> NullTranslations:
    locale = LOCALES.get(language)
    return Translations.load(str(CATALOGUE), [locale]) if locale else NullTranslations()


def translate(text: str, language: str) -> str:
    """`text` (English, as marked with N_) in `language` ("zh-CN" or "en")."""
    return _translations(language).gettext(text)
