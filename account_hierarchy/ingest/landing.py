"""The landing folder: which files are there, and their lines as Arrow arrays.

Landing files are newline-delimited JSON, plain or gzip-compressed, anywhere under the landing
folder: names ending in `.ndjson`, `.jsonl` or `.json`, optionally followed by `.gz`. Files
whose name starts with a dot, or inside a folder whose name does (temporary files of a writer
still at work), are ignored.
"""

import hashlib
import itertools
import os
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from account_hierarchy.ingest.classify import LINE_SCHEMA
from account_hierarchy.settings import is_hidden

LANDING_SUFFIXES = (".ndjson", ".jsonl", ".json")
BATCH_ROWS = 8192
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class LandingFile:
    """A file in the landing folder, named by its path relative to the folder."""

    path: str
    size: int
    mtime_ns: int

    @property
    def written_at(self) -> datetime:
        """Modification time, UTC, without time zone (the warehouse's convention)."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class FileContent:
    """The bytes of a landing file turned into lines. For a gzip file that cannot be read to
    its end, `lines` are the whole lines read before the damage, `error` says why the rest
    is unreadable and `cut_line` is the text of the line where reading stopped, if any."""

    content_hash: str
    lines: pa.Table
    error: str | None = None
    cut_line: str = ""


class LandingFileIndexError(ValueError):
    """A landing file the file index cannot hold: its name is not UTF-8, or it was modified
    after 2262-04-11 (a time in nanoseconds beyond 64 bits)."""


# The last modification time the index can hold, in nanoseconds since 1970.
LAST_MTIME_NS = 2**63 - 1


class LandingFolderError(OSError):
    """The landing folder, a folder in it or a file cannot be listed or read (a folder's files
    would look removed; a file, quarantined, would be lost)."""


def check_landing_folder(landing_dir: Path, known_files: int) -> None:
    """Refuse a landing folder that is gone (unmounted, mistyped) while `known_files` files were
    seen in it: read as empty, every file would be forgotten and its events deleted."""
    if known_files and not landing_dir.is_dir():
        raise LandingFolderError(
            f"the landing folder {landing_dir} does not exist or is not a folder, but "
            f"{known_files} landing files were seen in it: is it mounted, is AH_LANDING_DIR "
            "right? (nothing is read, loaded or forgotten until it is back)"
        )


def is_landing_file(relative: Path) -> bool:
    """True for NDJSON file names we ingest, given a path relative to the landing folder (see
    the module docstring)."""
    if is_hidden(relative):
        return False
    return relative.name.removesuffix(".gz").endswith(LANDING_SUFFIXES)


def list_landing_files(landing_dir: Path) -> list[LandingFile]:
    """Every landing file under `landing_dir`, sorted by path (none when it does not exist).
    A folder that cannot be listed is an error, not an empty folder: its files would look
    removed (symbolic links to folders are not followed, as before)."""
    if not landing_dir.is_dir():
        return []

    def unlistable(error: OSError) -> None:
        raise LandingFolderError(
            f"cannot list the landing folder {error.filename}: {error.strerror or error} (its "
            "files would look removed; nothing is read until it can be listed)"
        ) from error

    files = []
    for folder, subfolders, names in os.walk(landing_dir, onerror=unlistable):
        subfolders[:] = [name for name in subfolders if not is_hidden(Path(name))]
        for file_name in names:
            path = Path(folder) / file_name
            relative = path.relative_to(landing_dir)
            if not (is_landing_file(relative) and path.is_file()):
                continue
            name = relative.as_posix()
            try:
                name.encode()
            except UnicodeEncodeError:
                shown = os.fsencode(path).decode(errors="backslashreplace")
                raise LandingFileIndexError(
                    f"landing file {shown}: its name is not UTF-8; rename it (no landing file "
                    "is read until then)"
                ) from None
            stat = path.stat()
            if stat.st_mtime_ns > LAST_MTIME_NS:
                year = datetime.fromtimestamp(stat.st_mtime, UTC).year
                raise LandingFileIndexError(
                    f"landing file {path}: modified in {year}, "
                    "after 2262-04-11, which the file index cannot hold; set its time "
                    "(`touch` it; no landing file is read until then)"
                )
            files.append(LandingFile(name, stat.st_size, stat.st_mtime_ns))
    return sorted(files, key=lambda file: file.path)


def read_landing_file(landing_dir: Path, file: LandingFile) -> FileContent:
    """Hash a file's bytes (and whether they are read as gzip) and split its (decompressed)
    content into numbered lines. A file that cannot be read fails the run naming it
    (quarantined, it would be lost)."""
    path = landing_dir / file.path
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LandingFolderError(f"cannot read the landing file {path}: {error}") from error
    content_hash = hashlib.sha256(data).hexdigest()
    if file.path.endswith(".gz"):
        # (bytes read as gzip are other lines than the same bytes read as text: a file is a
        # re-delivery of another only when both are read the same way)
        content_hash = "gzip:" + content_hash
        data, cut, error = gunzip(data)
        if error is not None:
            cut = cut.removeprefix(UTF8_BOM) if not data else cut
            return FileContent(content_hash, split_lines(data), error, cut.decode(errors="replace"))
    return FileContent(content_hash, split_lines(data))


def gunzip(data: bytes) -> tuple[bytes, bytes, str | None]:
    """Decompress gzip data of one or more members (zero bytes may pad between them), as
    `gzip.decompress` does. Data that cannot be read to its end gives what could be trusted, the
    line cut off, and why the rest cannot be read: the whole members before the damage (each
    checked against its CRC), then of a truncated last member the text up to its last line
    break; the text after it is the line cut off."""
    members: list[bytes] = []
    while data:
        after = " after its last whole gzip member" if members else ""
        if not GZIP_MAGIC.startswith(data[:2]):
            return b"".join(members), b"", f"unreadable gzip file{after}: not gzip data"
        reader = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
        try:
            text = reader.decompress(data)
        except zlib.error as error:
            return b"".join(members), b"", f"unreadable gzip file{after}: {error}"
        if not reader.eof:
            truncated = f"unreadable gzip file{after}: it ends early (truncated)"
            if not text:  # (cut before any of its text: the members before are whole)
                return b"".join(members), b"", truncated
            text = b"".join([*members, text])
            end = text.rfind(b"\n") + 1
            return text[:end], text[end:], truncated
        members.append(text)
        data = reader.unused_data.lstrip(b"\0")
    return b"".join(members), b"", None


def split_lines(data: bytes) -> pa.Table:
    """Split bytes into lines numbered from 1, without copying the text.

    Each string keeps its trailing newline (stripped later, in SQL). A UTF-8 byte order mark
    at the start is not part of the first line. Lines that are not valid UTF-8 are replaced by
    their decoded text with replacement characters and flagged.
    """
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n")) + 1
    if data and not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    first = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    offsets = np.concatenate([[first], ends]).astype(np.int64)
    count = len(ends)
    lines = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    utf8_error = np.zeros(count, dtype=bool)
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        lines, utf8_error = _decode_line_by_line(data, offsets)
    table = pa.table(
        {
            "source_line": pa.array(np.arange(1, count + 1, dtype=np.int64)),
            "line": lines,
            "utf8_error": pa.array(utf8_error),
        },
        schema=LINE_SCHEMA,
    )
    # DuckDB scans an Arrow table one batch per thread: small batches use every core.
    return pa.Table.from_batches(table.to_batches(max_chunksize=BATCH_ROWS), schema=LINE_SCHEMA)


def _decode_line_by_line(data: bytes, offsets: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    texts, errors = [], []
    for start, end in itertools.pairwise(offsets):
        chunk = data[start:end]
        try:
            texts.append(chunk.decode("utf-8"))
            errors.append(False)
        except UnicodeDecodeError:
            texts.append(chunk.decode("utf-8", errors="replace"))
            errors.append(True)
    return pa.array(texts, pa.large_string()), np.array(errors, dtype=bool)
