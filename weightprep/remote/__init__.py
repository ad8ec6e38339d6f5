"""Talking to places that hold weights: the Hugging Face Hub, Google Drive, a folder.

This layer reaches remotes and reports what it found; it decides nothing (what to send, what to
keep, what counts as verified is `publish`'s, `fetch`'s and `verify`'s). It imports only the
package's leaves (`errors`, `progress`, `io`, `checksum`, `manifest`), never `publish`, `fetch`,
`cli` or anything else above it (tests/test_layers.py checks).

- `location`: `hf://`, `gdrive://` and folder locations, parsed once.
- `retry`: the one retry loop and its budget (`WEIGHTPREP_RETRY_BUDGET`).
- `listing`: one remote file as listed (size and digests), and the one comparison of what was
  expected with what is listed.
- `hub`, `drive`: one client per backend: its failure classifier, its listing with digests,
  sending and fetching files.
"""
