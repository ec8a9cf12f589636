"""The receiver's local view: a message's free texts converted to the receiver's Chinese script (docs/protocol.md §9.3).

The view is a convenience, never the record (PROTO-9.3-2): the signed message keeps
each text as written, and every converted text is marked machine-converted
(`ConvertedText`). Only *free_text* objects (`{"text", "lang"}`, §6.1) are converted.

Names are never converted (PROTO-6.1-2). They are *name* objects (`script`, `family`,
`given`), which the walker cannot take for free text; and they must not be, because a
character conversion is not a name conversion: `s2hk` turns 于先生 into 於先生, but 于
and 於 are different surnames. A name in another script is a separate name the
sender supplies.

Conversion is by OpenCC (BYVoid/OpenCC tables, the `opencc` binding):

- Simplified to Hong Kong Traditional: `s2hk` (Hong Kong variants, e.g. 裏, 着).
- Simplified to Macao Traditional: also `s2hk`. OpenCC has no Macao table; Macao's
  government and press write Traditional with Hong Kong character forms (為, not the
  OpenCC-standard 爲 that `s2t` produces), so `s2hk` is the closer of the two.
- Simplified to Taiwan Traditional `s2tw`; to Traditional with no region `s2t`.
- Traditional to Simplified: `hk2s` (it also reads OpenCC-standard forms such as 爲 and
  衞), or `tw2s` for Taiwan text.

A text already in the receiver's script, and text in any other language (`en`, `pt`),
gets no entry. A tag without a script subtag takes the likely script of CLDR's
likelySubtags (`zh` and `zh-CN` Simplified; `zh-HK`, `zh-MO`, `zh-TW` and `yue`
Traditional). Only Chinese (`zh`) and Cantonese (`yue`) are converted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import opencc

from gateway.protocol.statements import ConvertedText

RECEIVER_LANG: Mapping[str, str] = MappingProxyType({"CN-GD": "zh-Hans-CN", "HK": "zh-Hant-HK", "MO": "zh-Hant-MO"})
"""The language tag each jurisdiction's officers read (the local view's target), by jurisdiction code."""

_FREE_TEXT_MEMBERS = frozenset({"text", "lang"})
_TAG = re.compile(r"(?P<language>[a-z]{2,3})(?:-(?P<script>[A-Z][a-z]{3}))?(?:-(?P<region>[A-Z]{2}|[0-9]{3}))?")
_CHINESE_LANGUAGES = frozenset({"zh", "yue"})
_LIKELY_SCRIPT_BY_REGION = {"CN": "Hans", "SG": "Hans", "MY": "Hans", "HK": "Hant", "MO": "Hant", "TW": "Hant"}
_LIKELY_SCRIPT_BY_LANGUAGE = {"zh": "Hans", "yue": "Hant"}
_TO_TRADITIONAL = {"HK": "s2hk", "MO": "s2hk", "TW": "s2tw"}  # any other region, or none: OpenCC-standard s2t


class _Tag(NamedTuple):
    language: str
    script: str
    region: str | None


class _Conversion(NamedTuple):
    config: str
    """The OpenCC configuration file's name, e.g. `s2hk`."""
    lang: str
    """The converted text's language tag: the source's language, the target's script and region."""


def free_text_pointers(payload: Mapping[str, Any]) -> list[str]:
    """JSON Pointers (RFC 6901) to every free-text object of the payload, in document order.

    A free text is an object whose members are exactly `text` and `lang`, both strings
    (§6.1 *free_text*; no other object of the schemas has a `text` member).
    """
    return [pointer for pointer, _ in _free_texts(payload, "")]


def convert_text(text: str, from_lang: str, to_lang: str) -> str | None:
    """`text`, written in `from_lang`, converted to the script of `to_lang`; None when no conversion applies.

    None when either tag is not Chinese (`zh`, `yue`) or cannot be read, and when both
    name the same script (Simplified or Traditional, whatever the regions).
    """
    conversion = _conversion(from_lang, to_lang)
    return None if conversion is None else _converter(conversion.config).convert(text)


def local_view_texts(payload: Mapping[str, Any], receiver_lang: str) -> tuple[ConvertedText, ...]:
    """The converted free texts of a message payload for a receiver reading `receiver_lang` (§9.3), in document order.

    Each entry's `lang` keeps the text's language and takes the receiver's script and
    region (`zh-Hans` text for `zh-Hant-HK` becomes `zh-Hant-HK`). Texts that need no
    conversion are left out; names are never among them.
    """
    return converted_texts(_free_texts(payload, ""), receiver_lang)


def converted_texts(free_texts: Iterable[tuple[str, Mapping[str, str]]], receiver_lang: str) -> tuple[ConvertedText, ...]:
    """`local_view_texts` of free texts already found, as (JSON Pointer, free text object) in document order."""
    texts = []
    for pointer, free_text in free_texts:
        conversion = _conversion(free_text["lang"], receiver_lang)
        if conversion is not None:
            converted = _converter(conversion.config).convert(free_text["text"])
            texts.append(ConvertedText(pointer, converted, conversion.lang))
    return tuple(texts)


def is_free_text(value: Mapping[str, Any]) -> bool:
    """A free text object (§6.1 *free_text*): exactly `text` and `lang`, both strings."""
    return value.keys() == _FREE_TEXT_MEMBERS and all(isinstance(member, str) for member in value.values())


def _free_texts(value: Any, pointer: str) -> Iterator[tuple[str, Mapping[str, str]]]:
    """Every free text object (not looked into) with its JSON Pointer, in document order. The adapters' local view
    finds them in its own single walk (gateway/adapters/base.py `_collect_view_parts`)."""
    stack = [(pointer, value)]
    while stack:
        pointer, value = stack.pop()
        if type(value) is str:
            continue
        if type(value) is dict or isinstance(value, Mapping):
            if is_free_text(value):
                yield pointer, value
                continue
            stack += reversed([(f"{pointer}/{_escape(key)}", member) for key, member in value.items()])
        elif type(value) is list:
            stack += reversed([(f"{pointer}/{index}", member) for index, member in enumerate(value)])


def _escape(key: str) -> str:
    """An RFC 6901 reference token: `~` as `~0`, `/` as `~1`."""
    return key.replace("~", "~0").replace("/", "~1") if "~" in key or "/" in key else key


def _chinese_tag(lang: str) -> _Tag | None:
    """The tag's language, script (explicit or likely) and region, when it is Chinese with a known script."""
    match = _TAG.fullmatch(lang)
    if match is None or match["language"] not in _CHINESE_LANGUAGES:
        return None
    script = (
        match["script"]
        or _LIKELY_SCRIPT_BY_REGION.get(match["region"] or "")
        or _LIKELY_SCRIPT_BY_LANGUAGE[match["language"]]
    )
    return _Tag(match["language"], script, match["region"])


def _conversion(from_lang: str, to_lang: str) -> _Conversion | None:
    """The OpenCC configuration between the two Chinese scripts and the converted text's tag (module docstring)."""
    source, target = _chinese_tag(from_lang), _chinese_tag(to_lang)
    if source is None or target is None or {source.script, target.script} != {"Hans", "Hant"}:
        return None  # not Chinese, the same script, or a script OpenCC does not write (Latn, Bopo...)
    if target.script == "Hant":
        config = _TO_TRADITIONAL.get(target.region or "", "s2t")
    else:
        config = "tw2s" if source.region == "TW" else "hk2s"
    lang = "-".join(part for part in (source.language, target.script, target.region) if part)
    return _Conversion(config, lang)


@functools.cache
def _converter(config: str) -> opencc.OpenCC:
    """One OpenCC converter per configuration, built on first use (loading a table takes milliseconds)."""
    return opencc.OpenCC(config)
