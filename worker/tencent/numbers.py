"""Phone numbers in, normalised ``Phone`` out, or an error that says what is wrong with which field.

Validation is libphonenumber's (``phonenumbers``): the gateway answers 1016 to a malformed
number only after a round trip, and its notion of "malformed" is at least this strict.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException

from worker.tencent.rules import InvalidInput
from worker.tencent.types import Phone

INVALID_NUMBER = 1016
MAX_NATIONCODE_DIGITS = 4

_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "has an unknown country code",
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}


def parse_phone(number: str, nationcode: str | None = None) -> Phone:
    """``+8613788888888``, or ``13788888888`` with nationcode ``86`` or ``+86``, normalised."""
    # Callers in Python may hand over an int (8613788888888): refused by name, not by a
    # traceback from deep inside.
    for field, value in (("mobile", number), ("nationcode", nationcode)):
        if not isinstance(value, str) and (field == "mobile" or value is not None):
            problem = f"must be a string, not {type(value).__name__}"
            raise InvalidInput(field, problem, INVALID_NUMBER)
    if nationcode is None:
        if not number.strip().startswith("+"):
            raise InvalidInput(
                "mobile",
                f"{number!r} has no country code: write it as +<country code><number> "
                "or give the nationcode",
                INVALID_NUMBER,
            )
        parsed = _parse(number, region=None)
    else:
        country_code, region = _country_code(nationcode)
        parsed = _parse(number, region)
        if parsed.country_code != country_code:
            raise InvalidInput(
                "nationcode",
                f"{nationcode!r} does not match the country code of {number!r}",
                INVALID_NUMBER,
            )
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(
            "mobile", f"{number!r} is not a valid number for {_country(parsed)}", INVALID_NUMBER
        )
    return Phone(
        nationcode=str(parsed.country_code),
        mobile=phonenumbers.national_significant_number(parsed),
    )


def _country_code(nationcode: str) -> tuple[int, str]:
    digits = nationcode.strip().removeprefix("+")
    # Calling codes have 1-3 digits (a leading 0 is let pass); the cap also keeps int() away
    # from a string of thousands of digits, which it refuses with a ValueError of its own.
    if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_NATIONCODE_DIGITS:
        raise InvalidInput(
            "nationcode", f"{nationcode!r} is not a country calling code", INVALID_NUMBER
        )
    region: str = phonenumbers.region_code_for_country_code(int(digits))
    if region == phonenumbers.UNKNOWN_REGION:
        raise InvalidInput(
            "nationcode", f"{nationcode!r} is not a known country calling code", INVALID_NUMBER
        )
    return int(digits), region


def _parse(number: str, region: str | None) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(number, region)
    except NumberParseException as error:
        problem = _PARSE_PROBLEMS.get(error.error_type, "is not a phone number")
        raise InvalidInput("mobile", f"{number!r} {problem}", INVALID_NUMBER) from None


def _country(parsed: phonenumbers.PhoneNumber) -> str:
    # Imported here, for an error message only: the geocoder loads its place names for every
    # country on import, some 120 MB and half a second, into every process that parses numbers.
    from phonenumbers import geocoder

    name = geocoder.country_name_for_number(parsed, "en")
    code = parsed.country_code
    return f"{name} ({code})" if name else f"country code {code}"
