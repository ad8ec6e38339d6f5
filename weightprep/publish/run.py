"""`publish`: verify the folder, then send it to its destination and check what arrived."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from weightprep.progress import NullProgress, Progress
from weightprep.publish.outcome import PublishResult
from weightprep.publish.source import prepare
from weightprep.remote.location import parse_location


@dataclass
class Options:
    public: bool = False
    revision: str | None = None
    message: str | None = None
    create_pr: bool = False
    dry_run: bool = False
    credentials: Path | None = None
    chunk_size: int = 64 * 2**20
    record: str | None = None  # how the weights were made (a run's RUN.md), for the model card


def publish(
    model_dir: Path, dest_text: str, opts: Options, progress: Progress | None = None
) -> PublishResult:
    progress = progress or NullProgress()
    dest = parse_location(dest_text)
    start = time.perf_counter()
    # the folder destination checks each source file while copying it (one read, not two)
    source = prepare(model_dir, progress, verify=dest.kind != "folder")
    result = PublishResult(
        dest=str(dest),
        source=str(model_dir),
        checked_by=source.checked_by,
        hashed=list(source.hashed),
        dry_run=opts.dry_run,
    )
    if dest.kind == "folder":
        from weightprep.publish.folder import publish_folder

        result.files = publish_folder(source, dest.path, dry_run=opts.dry_run, progress=progress)
    elif dest.kind == "hf":
        from weightprep.publish.hub import publish_hub

        result.files, result.notes = publish_hub(
            source,
            dest.target,
            public=opts.public,
            revision=opts.revision,
            message=opts.message,
            create_pr=opts.create_pr,
            dry_run=opts.dry_run,
            record=opts.record,
        )
    else:
        from weightprep.publish.drive import publish_drive

        result.files, result.notes = publish_drive(
            source,
            dest,
            credentials=opts.credentials,
            chunk_size=opts.chunk_size,
            dry_run=opts.dry_run,
            progress=progress,
        )
    result.seconds = time.perf_counter() - start
    return result
