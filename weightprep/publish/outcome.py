"""What a publish did, file by file: the core returns it, the CLI prints it or its JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class FileOutcome:
    path: str
    sha256: str
    size: int
    status: str  # sent | replaced | up-to-date | would-send | would-replace
    bytes_sent: int = 0


@dataclass
class PublishResult:
    dest: str
    source: str
    checked_by: str
    hashed: list[str]
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        return sum(f.bytes_sent for f in self.files)

    @property
    def up_to_date(self) -> bool:
        return all(f.status == "up-to-date" for f in self.files)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(bytes_sent=self.bytes_sent, up_to_date=self.up_to_date)
        return d
