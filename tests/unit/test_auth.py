import pytest

from fakes import FakeKeyStore, FakeProjectStore
from session_service.domain.errors import NotFound, Unauthorized
from session_service.domain.ids import hash_key
from session_service.services.auth import KEY_FORMAT, Admin, Authenticator


@pytest.fixture
def keys() -> FakeKeyStore:
    return FakeKeyStore()


@pytest.fixture
def admin(keys: FakeKeyStore) -> Admin:
    return Admin(FakeProjectStore(), keys)


def test_issued_key_authenticates_to_its_project_and_is_stored_only_as_a_hash(
    admin: Admin, keys: FakeKeyStore
) -> None:
    project = admin.create_project("demo")
    issued = admin.issue_key(project.project_id)
    assert KEY_FORMAT.match(issued.api_key)
    assert Authenticator(keys).project_for(issued.api_key) == project.project_id
    stored = list(keys.records.values())
    assert [r.key_hash for r in stored] == [hash_key(issued.api_key)]
    assert issued.api_key not in repr(stored) and issued.api_key not in repr(issued)


@pytest.mark.parametrize("presented", [None, "", "hello", "ssk_zz_" + "a" * 43, "ssk_0123456789ab_short"])
def test_missing_or_malformed_keys_are_rejected(keys: FakeKeyStore, presented: str | None) -> None:
    with pytest.raises(Unauthorized):
        Authenticator(keys).project_for(presented)


def test_unknown_and_revoked_keys_are_rejected(admin: Admin, keys: FakeKeyStore) -> None:
    project = admin.create_project("demo")
    issued = admin.issue_key(project.project_id)
    unknown = issued.api_key[:-1] + ("A" if issued.api_key[-1] != "A" else "B")
    with pytest.raises(Unauthorized, match="unknown"):
        Authenticator(keys).project_for(unknown)
    admin.revoke_key(project.project_id, issued.key_id)
    with pytest.raises(Unauthorized, match="revoked"):
        Authenticator(keys).project_for(issued.api_key)


def test_keys_cannot_be_issued_for_unknown_projects_or_revoked_across_projects(admin: Admin) -> None:
    with pytest.raises(NotFound):
        admin.issue_key("prj_01aaaaaaaaaaaaaaaaaaaaaaaa")
    a, b = admin.create_project("a"), admin.create_project("b")
    issued = admin.issue_key(a.project_id)
    with pytest.raises(NotFound):
        admin.revoke_key(b.project_id, issued.key_id)


def test_a_session_token_is_a_principal_for_one_session() -> None:
    from fakes import FakeTokenStore
    from session_service.domain.requests import CreateTokenRequest
    from session_service.services.tokens import TokenService

    keys = FakeKeyStore()
    store = FakeTokenStore(live={("prj_a", "ses_01aaaaaaaaaaaaaaaaaaaaaaaa")})
    now = [1000.0]
    tokens = TokenService(store, now=lambda: now[0])
    issued = tokens.mint("prj_a", "ses_01aaaaaaaaaaaaaaaaaaaaaaaa", CreateTokenRequest(ttl_s=60))
    authenticator = Authenticator(keys, tokens)
    principal = authenticator.principal_for(None, f"Bearer {issued.token}")
    assert (principal.project_id, principal.session_id) == ("prj_a", "ses_01aaaaaaaaaaaaaaaaaaaaaaaa")
    assert issued.token not in str(store.records)  # only the hash is kept
    now[0] = store.records[0].expires_at + 1
    with pytest.raises(Unauthorized, match="expired"):
        authenticator.principal_for(None, f"Bearer {issued.token}")
    with pytest.raises(Unauthorized):
        authenticator.principal_for(None, "Bearer sst_bad")
    with pytest.raises(NotFound):
        tokens.mint("prj_a", "ses_01bbbbbbbbbbbbbbbbbbbbbbbb", CreateTokenRequest())  # not a live session
