"""Each jurisdiction's assistance schemes: the code lists its adapter owns (docs/protocol.md §6.1, PROTO-6.7-1).

A scheme code names a local scheme of the granting jurisdiction (an award's `scheme`,
a verification request's `scheme`); each scheme maps to exactly one canonical
*assistance_category* (`schemas/defs.json`). Codes match the schema's pattern
`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$` (at most 48 characters).

Names are keyed by language tag: Guangdong `zh-Hans`, `zh-Hant`, `en`; Hong Kong
`zh-Hant`, `zh-Hans`, `en`; Macao `zh-Hant`, `zh-Hans`, `pt`, `en`. They are labels for
officers' screens; the code is what travels.

Sources (the project's domain research, shared/research/domain.md): Guangdong §0 and §3.1 (the "9+1" system,
《社会救助暂行办法》, the 2021 Guangdong plan extending special assistance to low-income
and expenditure-type households, 法律援助 and 司法救助); Hong Kong §3.2 (SWD's CSSA,
Portable CSSA, Social Security Allowance Scheme and its Guangdong Scheme; WFSFAA's
Working Family Allowance); Macao §3.3 (IAS financial assistance under Administrative
Regulation No. 6/2007: general, non-regular and special subsidies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Scheme:
    """One local scheme: its code, its canonical assistance category, its names by language tag."""

    code: str
    category: str
    names: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SchemeList:
    """The schemes one jurisdiction grants (its adapter's code list, §6.1)."""

    jurisdiction: str
    schemes: tuple[Scheme, ...]

    def __post_init__(self) -> None:
        codes = [scheme.code for scheme in self.schemes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"{self.jurisdiction}: a scheme code is listed twice")

    def get(self, code: str) -> Scheme | None:
        """The scheme with this code, or None when the jurisdiction has no such scheme."""
        return next((scheme for scheme in self.schemes if scheme.code == code), None)

    def for_category(self, category: str) -> tuple[Scheme, ...]:
        """The schemes of one canonical category, in list order (empty when none)."""
        return tuple(scheme for scheme in self.schemes if scheme.category == category)

    def name(self, code: str, lang: str) -> str:
        """The scheme's name for a reader of `lang`: the tag itself, then shorter prefixes of it, then English.

        `zh-Hant-HK` finds `zh-Hant`, `pt-MO` finds `pt`. Requires a listed code
        (KeyError otherwise). Names are never converted between scripts: every scheme
        carries the Chinese names of both scripts.
        """
        scheme = self.get(code)
        if scheme is None:
            raise KeyError(f"{self.jurisdiction} has no scheme {code}")
        subtags = lang.split("-")
        for length in range(len(subtags), 0, -1):
            name = scheme.names.get("-".join(subtags[:length]))
            if name is not None:
                return name
        return scheme.names["en"]


def _scheme(code: str, category: str, **names: str) -> Scheme:
    return Scheme(code, category, MappingProxyType({tag.replace("_", "-"): name for tag, name in names.items()}))


CN_GD = SchemeList(
    "CN-GD",
    (
        _scheme("DIBAO", "minimum_living_allowance",
                zh_Hans="最低生活保障", zh_Hant="最低生活保障", en="Minimum Living Allowance (dibao)"),
        _scheme("TEKUN", "extreme_poverty_support",
                zh_Hans="特困人员救助供养", zh_Hant="特困人員救助供養",
                en="Support for Persons in Extreme Poverty"),
        # 低收入家庭: in Guangdong the dibao-edge households (Guangzhou: 1.5 times the dibao line).
        _scheme("LOW_INCOME", "low_income",
                zh_Hans="低收入家庭救助", zh_Hant="低收入家庭救助", en="Assistance to Low-Income Households"),
        _scheme("ZHICHU", "expenditure_type_hardship",
                zh_Hans="支出型困难家庭救助", zh_Hant="支出型困難家庭救助",
                en="Assistance to Households in Expenditure-Type Hardship"),
        _scheme("LINSHI", "temporary", zh_Hans="临时救助", zh_Hant="臨時救助", en="Temporary Assistance"),
        _scheme("MEDICAL_AID", "medical", zh_Hans="医疗救助", zh_Hant="醫療救助", en="Medical Assistance"),
        _scheme("HOUSING_AID", "housing", zh_Hans="住房救助", zh_Hant="住房救助", en="Housing Assistance"),
        _scheme("EDUCATION_AID", "education", zh_Hans="教育救助", zh_Hant="教育救助", en="Education Assistance"),
        _scheme("EMPLOYMENT_AID", "employment", zh_Hans="就业救助", zh_Hant="就業救助", en="Employment Assistance"),
        _scheme("DISASTER_AID", "disaster",
                zh_Hans="受灾人员救助", zh_Hant="受災人員救助", en="Assistance to Disaster Victims"),
        _scheme("LEGAL_AID", "legal_aid", zh_Hans="法律援助", zh_Hant="法律援助", en="Legal Aid"),
        _scheme("JUDICIAL_AID", "judicial_assistance", zh_Hans="司法救助", zh_Hant="司法救助", en="Judicial Assistance"),
    ),
)

HK = SchemeList(
    "HK",
    (
        _scheme("HK_CSSA", "minimum_living_allowance",
                zh_Hant="綜合社會保障援助", zh_Hans="综合社会保障援助",
                en="Comprehensive Social Security Assistance"),
        # Portable CSSA: elderly CSSA recipients retiring to Guangdong or Fujian keep the standard rate.
        _scheme("HK_PCSSA", "minimum_living_allowance",
                zh_Hant="綜援長者廣東及福建省養老計劃", zh_Hans="综援长者广东及福建省养老计划",
                en="Portable Comprehensive Social Security Assistance Scheme"),
        # OALA is means-tested (income and assets) for people aged 65+. The shipped referral.close example and its
        # signed conformance vector award HK_OALA_GD as minimum_living_allowance, and a scheme has one category
        # (the adapters refuse another), so both OALA schemes are there: for an elderly Hong Kong resident living
        # in Guangdong it is the basic living support the Guangdong side asked for.
        _scheme("HK_OALA", "minimum_living_allowance",
                zh_Hant="長者生活津貼", zh_Hans="长者生活津贴", en="Old Age Living Allowance"),
        _scheme("HK_OALA_GD", "minimum_living_allowance",
                zh_Hant="廣東計劃長者生活津貼", zh_Hans="广东计划长者生活津贴",
                en="Old Age Living Allowance under the Guangdong Scheme"),
        # OAA and DA are not means-tested, and no canonical category fits them exactly: these are the nearest
        # (OAA supplements an elderly person's income; DA meets the extra costs of a severe disability).
        _scheme("HK_OAA", "low_income", zh_Hant="高齡津貼", zh_Hans="高龄津贴", en="Old Age Allowance"),
        _scheme("HK_OAA_GD", "low_income",
                zh_Hant="廣東計劃高齡津貼", zh_Hans="广东计划高龄津贴",
                en="Old Age Allowance under the Guangdong Scheme"),
        _scheme("HK_DA", "expenditure_type_hardship", zh_Hant="傷殘津貼", zh_Hans="伤残津贴", en="Disability Allowance"),
        _scheme("HK_WFA", "low_income", zh_Hant="在職家庭津貼", zh_Hans="在职家庭津贴", en="Working Family Allowance"),
    ),
)

MO = SchemeList(
    "MO",
    (
        # Administrative Regulation No. 6/2007: the general subsidy tops the household up to the 最低維生指數.
        _scheme("MO_IAS_GENERAL", "minimum_living_allowance",
                zh_Hant="一般援助金", zh_Hans="一般援助金", pt="Subsídio regular",
                en="General Subsidy (IAS financial assistance)"),
        # Sudden events: burial, public disasters, minors in crisis, institutional care, emergencies.
        _scheme("MO_IAS_NONREGULAR", "temporary",
                zh_Hant="偶發性援助金", zh_Hans="偶发性援助金", pt="Subsídio eventual",
                en="Non-Regular Subsidy (IAS financial assistance)"),
        # Vulnerable families' extra needs: study, care and disability supplements.
        _scheme("MO_IAS_SPECIAL", "expenditure_type_hardship",
                zh_Hant="特別援助金", zh_Hans="特别援助金", pt="Subsídio específico",
                en="Special Subsidy (IAS financial assistance)"),
    ),
)

SCHEME_LISTS: Mapping[str, SchemeList] = MappingProxyType({listed.jurisdiction: listed for listed in (CN_GD, HK, MO)})
"""The scheme list of each jurisdiction, by jurisdiction code (§2.1)."""
