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


def test_erasure_finds_and_clears_a_person_in_parked_and_unpublished_events_too() -> None:
    import json

    from shared.envelope import KafkaRecord
    from shared.privacy import subject_key
    from shared.runtime.erasure import anonymised
    from shared.store import Aggregate, ParkedRecord, _to_document

    person = {"contact": {"email": "jana@acme.example", "first_name": "Jana", "phone": "+49 30 1"}}
    parked = ParkedRecord("t", 0, 1, {"ce_id": "p"}, json.dumps(person))
    pending = KafkaRecord("t", b"d-1", json.dumps(person).encode(), {})
    only_parked = Aggregate(id="d-1", version=1, parked=(parked,), outbox=(pending,))
    assert subject_key("jana@acme.example") in _to_document(only_parked)["subjects"]

    cleared = anonymised(only_parked, "jana@acme.example")
    for text in (cleared.parked[0].value, cleared.outbox[0].value.decode()):
        assert "jana" not in text.lower()
        assert "+49" not in text
    assert _to_document(cleared)["subjects"] == []
