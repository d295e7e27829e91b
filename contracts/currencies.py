"""ISO 4217 minor units: how many decimal places each currency's amounts have.

`Money.amount_minor` counts a currency's minor unit, so 1,000 is 10.00 EUR but 1,000 JPY and 1.000 KWD.
Amounts in two currencies are only comparable as money: convert `amount_minor / 10**exponent` units.
"""

from __future__ import annotations

from decimal import Decimal

DEFAULT_EXPONENT = 2
# ISO 4217's currencies whose minor unit is not a hundredth (the list's "minor unit" column, 2024).
EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def exponent(currency: str) -> int:
    """The number of decimal places of the currency's amounts: 2 unless ISO 4217 says otherwise."""
    return EXPONENTS.get(currency, DEFAULT_EXPONENT)


def to_units(amount_minor: int | Decimal, currency: str) -> Decimal:
    """An amount in minor units as whole currency units: 1,050 EUR minor units are 10.50 EUR."""
    return Decimal(amount_minor).scaleb(-exponent(currency))


def to_minor_units(units: Decimal, currency: str) -> Decimal:
    """Currency units as minor units, unrounded: 10.5 EUR are 1,050 EUR minor units."""
    return units.scaleb(exponent(currency))
