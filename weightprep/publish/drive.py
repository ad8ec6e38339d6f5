"""Publish to Google Drive: list what the folder holds, upload what differs (resumably, through
`weightprep.remote.drive`), and check Drive's own sha256 of every file it stored."""

from __future__ import annotations

from pathlib import Path

from weightprep.errors import InputError, VerificationError
from weightprep.progress import NullProgress, Progress
from weightprep.publish.outcome import FileOutcome
from weightprep.publish.source import Source
from weightprep.remote import drive
from weightprep.remote.listing import Listed, mismatch
from weightprep.remote.location import Location


def refuse_service_account_root(credentials: Path | None, dest: Location) -> None:
    """A service account's own My Drive (`gdrive://root/...`) is nobody's: you never see what is
    uploaded there, and service accounts have no storage quota of their own, so the upload
    fails once it is big. Refused before anything is sent, saying what works instead."""
    if credentials is None or dest.target != "root":
        return
    import json

    try:
        info = json.loads(credentials.read_text())
    except (OSError, ValueError):
        return  # drive.credentials() says what is wrong with the file
    if isinstance(info, dict) and info.get("type") == "service_account":
        who = info.get("client_email", "the service account")
        raise InputError(
            f"{credentials}: a service account's gdrive://root is its own Drive: you would never "
            f"see the files, and it has no storage quota; share a folder of yours with {who} "
            "(as Editor) and publish to gdrive://THAT_FOLDER_ID/..., or use your own credentials "
            "(docs/publish.md, 'Drive credentials')"
        )


def publish_drive(
    source: Source,
    dest: Location,
    *,
    credentials: Path | None = None,
    chunk_size: int = 64 * 2**20,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> tuple[list[FileOutcome], list[str]]:
    progress = progress or NullProgress()
    refuse_service_account_root(credentials, dest)
    svc = drive.service(credentials)
    root = drive.resolve_root(svc, dest, create=not dry_run)
    remote = {} if root is None else drive.walk(svc, root)
    plan = []
    for f in source.files:
        r = remote.get(f.rel)
        same = r is not None and mismatch(Listed(f.size, f.sha256), r) is None
        plan.append((f, r, "up-to-date" if same else ("replace" if r else "send")))
    if dry_run:
        return [
            FileOutcome(f.rel, f.sha256, f.size, s if s == "up-to-date" else f"would-{s}")
            for f, _, s in plan
        ], []
    assert root is not None
    progress.start(sum(f.size for f, _, s in plan if s != "up-to-date"), f"upload to {dest}")
    out = []
    folders: dict[str, str] = {"": root}
    try:
        for f, r, status in plan:
            if status == "up-to-date":
                out.append(FileOutcome(f.rel, f.sha256, f.size, status))
                continue
            parent_rel = str(Path(f.rel).parent) if "/" in f.rel else ""
            if parent_rel not in folders:
                pid = root
                for part in Path(parent_rel).parts:
                    pid = drive.ensure_folder(svc, pid, part, create=True)
                folders[parent_rel] = pid
            key = f"{dest}|{f.rel}|{f.sha256}"
            body, sent = drive.upload(
                svc, f.path, f.rel, folders[parent_rel], r, key, chunk_size, progress
            )
            drive.forget_session(key)
            why = mismatch(Listed(f.size, f.sha256), drive.listed(body))
            if why is not None:
                raise VerificationError(f"{dest}/{f.rel}: Drive holds {why} after upload")
            out.append(
                FileOutcome(
                    f.rel, f.sha256, f.size, "sent" if status == "send" else "replaced", sent
                )
            )
    finally:
        progress.finish()
    return out, []
