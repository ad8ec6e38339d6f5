"""The stand-in Hub (tests/hubserver.py) against huggingface_hub's real client: create a private
repo, upload through preupload / LFS batch / PUT / verify / commit, list, download, and the
client's behaviour under injected failures, wrong tokens and server-side corruption."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.hubserver import COMMIT, HubStandIn, git_blob_id, lfs_pointer

TOKEN = "hf_stand_in_token"
REPO = "stand-in-user/tiny"


@pytest.fixture
def hub(hub_stand_in):
    """hub(repos=None, **options): tests/conftest.py's stand-in Hub."""
    return hub_stand_in


def _folder(root: Path) -> Path:
    """A small model folder: LFS by pattern (.safetensors), by size (> 1 KB with
    lfs_threshold=1024) and by content (a NUL byte); and two plain git files."""
    root.mkdir()
    (root / "config.json").write_text('{"hidden_size": 8}\n')
    (root / "model.safetensors").write_bytes(os.urandom(3000))
    (root / "notes").mkdir()
    (root / "notes" / "log.txt").write_text("step 1 loss 2.0\n" * 100)
    (root / "notes" / "tiny.txt").write_text("tiny\n")
    (root / "tok.dat").write_bytes(b"\0\1\2" * 40)
    return root


LFS = {"model.safetensors", "notes/log.txt", "tok.dat"}


def _local(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _api(server: HubStandIn, token=TOKEN):
    from huggingface_hub import HfApi

    return HfApi(endpoint=server.url, token=token)


def _since(server: HubStandIn, n: int) -> list[tuple[str, str]]:
    return server.requests[n:]


def _uploaded(server, tmp_path, **options):
    server_ = server(token=TOKEN, lfs_threshold=1024, **options)
    folder = _folder(tmp_path / "model")
    api = _api(server_)
    api.create_repo(REPO, private=True)
    info = api.upload_folder(repo_id=REPO, folder_path=folder)
    return server_, api, folder, info


def test_private_repo_upload_list_download(hub, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    server = hub(token=TOKEN, lfs_threshold=1024)
    api = _api(server)
    assert api.whoami()["name"] == "stand-in-user"
    url = api.create_repo(REPO, private=True)
    assert url.repo_id == REPO and server.is_private(REPO)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO)
    assert exc.value.response.status_code == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO

    folder = _folder(tmp_path / "model")
    local = _local(folder)
    n = len(server.requests)
    info = api.upload_folder(repo_id=REPO, folder_path=folder)
    sent = _since(server, n)
    assert [m for m, _ in sent].count("PUT") == len(LFS)
    assert {p.rsplit("/", 1)[-1] for m, p in sent if m == "PUT"} == {
        hashlib.sha256(local[f]).hexdigest() for f in LFS
    }
    assert ("POST", f"/api/models/{REPO}/preupload/main") in sent
    assert ("POST", f"/{REPO}.git/info/lfs/objects/batch") in sent
    assert sent.count(("POST", f"/{REPO}.git/info/lfs/objects/verify")) == len(LFS)
    assert sent[-1] == ("POST", f"/api/models/{REPO}/commit/main")
    assert server.bytes_received == sum(len(local[f]) for f in LFS)

    model = api.model_info(REPO, files_metadata=True)
    assert model.private is True and model.sha == info.oid == server.head(REPO)
    assert {s.rfilename for s in model.siblings} == set(local) | {".gitattributes"}
    assert {s.rfilename for s in model.siblings if s.lfs} == LFS

    tree = list(api.list_repo_tree(REPO, recursive=True, expand=True))
    files = {f.path: f for f in tree if hasattr(f, "blob_id")}
    assert {f.path for f in tree if not hasattr(f, "blob_id")} == {"notes"}
    assert set(files) == set(local) | {".gitattributes"}
    for path, data in local.items():
        f = files[path]
        assert f.size == len(data) and f.last_commit.oid == info.oid
        if path in LFS:
            sha = hashlib.sha256(data).hexdigest()
            assert (f.lfs.sha256, f.lfs.size) == (sha, len(data))
            assert f.lfs.pointer_size == len(lfs_pointer(sha, len(data)))
            assert f.blob_id == git_blob_id(lfs_pointer(sha, len(data)))  # git stores the pointer
        else:
            assert f.lfs is None and f.blob_id == git_blob_id(data)

    got = api.get_paths_info(REPO, ["config.json", "notes", "missing.txt"])
    assert [(type(e).__name__, e.path) for e in got] == [
        ("RepoFile", "config.json"),
        ("RepoFolder", "notes"),
    ]

    for path, data in local.items():
        got = hf_hub_download(REPO, path, token=TOKEN, cache_dir=tmp_path / "cache")
        assert Path(got).read_bytes() == data
    snap = Path(snapshot_download(REPO, token=TOKEN, cache_dir=tmp_path / "snap"))
    assert _local(snap) == {**local, ".gitattributes": server.files(REPO)[".gitattributes"]}


def test_identical_reupload_sends_no_bytes(hub, tmp_path):
    """The client asks preupload (which reports each remote oid) and the LFS batch API (which
    answers without an upload action for objects the repo has): no PUT, no commit."""
    server, api, folder, first = _uploaded(hub, tmp_path)
    sent_bytes, n = server.bytes_received, len(server.requests)

    again = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert again.oid == first.oid == server.head(REPO)  # no new commit
    assert _since(server, n) == [
        ("POST", f"/api/models/{REPO}/preupload/main"),
        ("POST", f"/{REPO}.git/info/lfs/objects/batch"),
        ("GET", f"/api/models/{REPO}/revision/main"),  # the client's "nothing changed" answer
    ]
    assert server.bytes_received == sent_bytes

    # the same content under new paths: a commit, but the LFS objects are not sent again
    copy = api.upload_folder(repo_id=REPO, folder_path=folder, path_in_repo="copy")
    assert copy.oid != first.oid and server.bytes_received == sent_bytes
    stored = server.files(REPO)
    assert all(stored[f"copy/{p}"] == data for p, data in _local(folder).items())


def test_injected_503_on_lfs_batch_and_put_is_retried(hub, tmp_path):
    """The client retries 5xx on preupload, the LFS batch, the PUT and verify (http_backoff);
    each retry waits about 1 s."""
    server = hub(token=TOKEN)
    folder = tmp_path / "one"
    folder.mkdir()
    data = os.urandom(2000)
    (folder / "model.safetensors").write_bytes(data)
    api = _api(server)
    api.create_repo(REPO)
    server.fail_next("POST", "/info/lfs/objects/batch", 503)
    server.fail_next("PUT", "/lfs-upload/", 503)
    info = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert [s for _, _, s in server.injected] == [503, 503]
    assert [m for m, _ in server.requests].count("PUT") == 2
    assert server.bytes_received == 2 * len(data)  # the failed PUT's body was read too
    assert server.head(REPO) == info.oid
    assert server.files(REPO)["model.safetensors"] == data


def test_injected_503_on_commit_is_not_retried(hub, tmp_path):
    """The commit POST is sent once (huggingface_hub 2.4.0 does not retry it: a retry could
    commit twice); running the upload again commits without re-sending LFS bytes."""
    from huggingface_hub.errors import HfHubHTTPError

    server = hub(token=TOKEN, lfs_threshold=1024)
    folder = _folder(tmp_path / "model")
    api = _api(server)
    api.create_repo(REPO, private=True)
    before = server.head(REPO)
    server.fail_next("POST", "/commit/", 503)
    with pytest.raises(HfHubHTTPError) as exc:
        api.upload_folder(repo_id=REPO, folder_path=folder)
    assert exc.value.response.status_code == 503
    assert [p for _, p, _ in server.injected] == [f"/api/models/{REPO}/commit/main"]
    assert server.head(REPO) == before
    uploaded = server.bytes_received
    assert uploaded == sum(len(d) for p, d in _local(folder).items() if p in LFS)

    info = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert server.bytes_received == uploaded and server.head(REPO) == info.oid != before


def test_auth_errors(hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    server, api, folder, _ = _uploaded(hub, tmp_path)

    # no token: the Hub hides private repos behind "not found"
    with pytest.raises(RepositoryNotFoundError):
        _api(server, token=False).model_info(REPO)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "config.json", token=False, cache_dir=tmp_path / "c1")

    # a wrong token: 401, the client's plain HTTP error (and whoami's "Invalid user token.")
    wrong = _api(server, token="hf_wrong")
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as exc:
        wrong.whoami()
    assert exc.value.response.status_code == 401
    for call in (
        lambda: wrong.upload_folder(repo_id=REPO, folder_path=folder),
        lambda: wrong.list_repo_files(REPO),
        lambda: hf_hub_download(REPO, "config.json", token="hf_wrong", cache_dir=tmp_path / "c2"),
    ):
        with pytest.raises(HfHubHTTPError) as exc:
            call()
        assert exc.value.response.status_code == 401
        assert not isinstance(exc.value, RepositoryNotFoundError)

    # the LFS upload URL is presigned: no token needed, but the signature must match
    oid = "0" * 64
    put = urllib.request.Request(
        f"{server.url}/lfs-upload/{REPO}/{oid}?sig=forged", data=b"x", method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(put, timeout=5)
    assert err.value.code == 403


def test_without_server_token_private_repos_need_some_token(hub, tmp_path):
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    server = hub()
    with pytest.raises(HfHubHTTPError) as exc:
        _api(server, token=False).create_repo("someone/x")
    assert exc.value.response.status_code == 401
    _api(server, token="anything").create_repo("someone/x", private=True)
    with pytest.raises(RepositoryNotFoundError):
        _api(server, token=False).model_info("someone/x")
    assert _api(server, token="anything").model_info("someone/x").private is True


def test_corruption_shows_in_listing_and_download(hub, tmp_path):
    from huggingface_hub import hf_hub_download

    server, api, folder, _ = _uploaded(hub, tmp_path)
    good = (folder / "model.safetensors").read_bytes()
    good_sha = hashlib.sha256(good).hexdigest()

    server.corrupt(REPO, "model.safetensors")
    stored = server.files(REPO)["model.safetensors"]
    assert stored != good and len(stored) == len(good)
    (entry,) = api.get_paths_info(REPO, "model.safetensors")
    assert entry.size == len(good) and entry.lfs.sha256 == hashlib.sha256(stored).hexdigest()
    assert entry.lfs.sha256 != good_sha
    got = hf_hub_download(REPO, "model.safetensors", token=TOKEN, cache_dir=tmp_path / "c1")
    assert Path(got).read_bytes() == stored  # the client checks the size only

    # re-uploading the right content repairs it; the repo still has that LFS object
    sent = server.bytes_received
    api.upload_folder(repo_id=REPO, folder_path=folder)
    assert server.bytes_received == sent
    assert api.get_paths_info(REPO, "model.safetensors")[0].lfs.sha256 == good_sha

    # keep_listing: the listing keeps the old hashes; only the downloaded bytes differ
    server.corrupt(REPO, "model.safetensors", keep_listing=True)
    assert api.get_paths_info(REPO, "model.safetensors")[0].lfs.sha256 == good_sha
    got = hf_hub_download(REPO, "model.safetensors", token=TOKEN, cache_dir=tmp_path / "c2")
    assert hashlib.sha256(Path(got).read_bytes()).hexdigest() != good_sha


def test_folder_repos_still_served_as_before(hub_stand_in, tmp_path):
    """conftest's `hub_stand_in` fixture: folders served read-only at commit COMMIT; a commit on
    top of one lands in the server's memory, never in the folder."""
    from huggingface_hub import hf_hub_download

    folder = _folder(tmp_path / "model")
    local = _local(folder)
    server = hub_stand_in({"org/folder": folder})
    api = _api(server, token=None)
    assert api.model_info("org/folder").sha == COMMIT
    listed = {f.path: f for f in api.list_repo_tree("org/folder", recursive=True)}
    assert {p for p, f in listed.items() if hasattr(f, "blob_id")} == set(local)
    assert (
        listed["model.safetensors"].lfs.sha256
        == hashlib.sha256(local["model.safetensors"]).hexdigest()
    )
    assert listed["config.json"].blob_id == git_blob_id(local["config.json"])
    got = hf_hub_download("org/folder", "notes/log.txt", cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == local["notes/log.txt"]
    assert server.fetched()[-1] == "/org/folder/resolve/main/notes/log.txt"

    _api(server, token="anything").upload_file(
        path_or_fileobj=b"new\n", path_in_repo="added.txt", repo_id="org/folder"
    )
    assert server.files("org/folder")["added.txt"] == b"new\n"
    assert _local(folder) == local
    assert api.model_info("org/folder").sha == server.head("org/folder") != COMMIT


def test_tree_pages_follow_link_header(hub, tmp_path):
    folder = _folder(tmp_path / "model")
    server = hub({"org/paged": folder}, tree_page_size=2)
    entries = list(_api(server, token=None).list_repo_tree("org/paged", recursive=True))
    assert len(entries) == len(_local(folder)) + 1  # + the "notes" folder
    assert sum(1 for m, p in server.requests if "/tree/" in p) == 3
