"""A listing of the people to label, on disk: one JSON line per person, found by byte ranges.

Synthesis lists its input once (keypoints, masks, photo hashes) and labels it chunk by
chunk; a listing of 10^5 people is hundreds of megabytes as Python objects.  Written
here, it is read back one chunk at a time: the run's memory holds an index entry per image
(:class:`ListedImage`), not its people.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import DataError
from pipeline.formats.files import atomic_path


@dataclass
class ListedImage:
    """One image of a listing.

    Attributes:
        image: the photo's absolute path.
        key: hex SHA-256 over the photo's content hash and its people's lines (any change to
            the photo, a person's keypoints or mask changes it).
        ranges: [offset, length] in bytes of each of its people's lines, in listing order.
    """

    image: str
    key: str
    ranges: list[list[int]] = field(default_factory=list)


def write_listing(people: Iterable[tuple[str, str, dict]], path: str | Path) -> list[ListedImage]:
    """Write ``people``, (image path, the image's SHA-256, a JSON-able person dict) in any
    order, to ``path`` (atomically) and return its images in order of first appearance,
    each with its people's byte ranges."""
    index: dict[str, ListedImage] = {}
    digests: dict[str, hashlib._Hash] = {}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for image, image_sha256, person in people:
            line = (json.dumps(person, sort_keys=True) + "\n").encode("utf-8")
            entry = index.get(image)
            if entry is None:
                entry = index[image] = ListedImage(image, "")
                digests[image] = hashlib.sha256(image_sha256.encode())
            entry.ranges.append([f.tell(), len(line)])
            digests[image].update(line)
            f.write(line)
    for image, entry in index.items():
        entry.key = digests[image].hexdigest()
    return list(index.values())


def read_people(path: str | Path, ranges: list[list[int]]) -> list[dict]:
    """The person dicts at ``ranges`` ([offset, length] in bytes) of the listing ``path``.
    Raises DataError naming the file when it is missing or a range is not one of its lines."""
    path = Path(path)
    out = []
    try:
        with open(path, "rb") as f:
            for offset, length in ranges:
                f.seek(offset)
                out.append(json.loads(f.read(length)))
    except OSError as e:
        raise DataError(path, f"unreadable listing ({e.strerror or e})") from None
    except ValueError:
        raise DataError(path, "listing changed under the run (a range is not one of its lines)") from None
    return out
