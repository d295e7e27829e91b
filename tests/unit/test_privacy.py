"""Anonymising one person in documents of any shape, and finding them by a hashed key."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.privacy import ERASED, anonymise, emails_in, emails_in_json, subject_key, subject_keys

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


_texts = st.text(alphabet=st.sampled_from('ab@."\\\\/é\u2028{}:, e'), max_size=12)
_keys = st.sampled_from(["email", "contact_email", "name", 'e"mail', "email\\", "notes"])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | _texts | st.sampled_from(["x@y.example", "", ERASED]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=_json_values, ascii_only=st.booleans(), spaced=st.booleans())
def test_emails_read_from_a_records_text_are_those_of_the_decoded_record(
    value: object, ascii_only: bool, spaced: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(", ", ": ") if spaced else (",", ":"))
    assert set(emails_in_json(text.encode())) == set(emails_in(value))


def test_bytes_that_are_not_json_hold_no_email() -> None:
    assert list(emails_in_json(b'\xff\xfe{"email": "x@y')) == []
