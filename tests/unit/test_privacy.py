"""Anonymising one person in documents of any shape, and finding them by a hashed key."""

from shared.privacy import ERASED, anonymise, subject_key, subject_keys

STATE = {
    "contact": {
        "email": "jana@acme.de",
        "first_name": "Jana",
        "last_name": "Novak",
        "phone": "+49 1",
        "title": "CTO",
    },
    "colleagues": [{"email": "li@acme.de", "first_name": "Li"}],
    "fields": {"contact_email": "jana@acme.de", "contact_first_name": "Jana", "company_name": "Acme"},
    "rejections": [{"message": "'JANA@acme.de' was contacted twice"}],
    "company": {"name": "Acme", "employees": 250},
}


def test_the_person_is_anonymised_wherever_they_appear_and_nobody_else_is() -> None:
    erased = anonymise(STATE, "Jana@Acme.de ")

    assert erased["contact"] == {
        "email": ERASED,
        "first_name": None,
        "last_name": None,
        "phone": None,
        "title": "CTO",
    }
    assert erased["fields"] == {"contact_email": ERASED, "contact_first_name": None, "company_name": "Acme"}
    assert erased["rejections"] == [{"message": f"'{ERASED}' was contacted twice"}]
    assert erased["colleagues"] == STATE["colleagues"]
    assert erased["company"] == STATE["company"]


def test_documents_are_found_by_a_hash_of_each_email_they_hold() -> None:
    assert subject_keys(STATE) == sorted({subject_key("jana@acme.de"), subject_key("li@acme.de")})
    assert subject_key(" JANA@acme.de") == subject_key("jana@acme.de")
    assert "jana" not in subject_key("jana@acme.de")
    assert subject_keys(anonymise(STATE, "jana@acme.de")) == [subject_key("li@acme.de")]
