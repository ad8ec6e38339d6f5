"""The default test image, drawn here (so no licence question and no file to ship), and the
blank image the "image matters" check compares against."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightprep.errors import InputError

SIZE = (384, 288)
DRAWN = "built-in drawing (a red car, a tree, a sun)"


def default_image():
    """A red car on a road under a blue sky with a yellow sun, beside a green tree: simple
    shapes with names any captioner knows. Deterministic, drawn with PIL."""
    from PIL import Image, ImageDraw

    w, h = SIZE
    img = Image.new("RGB", SIZE)
    d = ImageDraw.Draw(img)
    for y in range(h * 2 // 3):  # sky, lighter towards the horizon
        t = y / (h * 2 / 3)
        d.line([(0, y), (w, y)], fill=(int(90 + 110 * t), int(150 + 70 * t), 235))
    d.rectangle([0, h * 2 // 3, w, h], fill=(70, 150, 60))  # grass
    d.rectangle([0, h * 3 // 4, w, h * 3 // 4 + 40], fill=(90, 90, 95))  # road
    d.ellipse([w - 90, 20, w - 30, 80], fill=(250, 215, 40))  # sun
    d.rectangle([40, 110, 60, 200], fill=(110, 70, 30))  # trunk
    d.ellipse([10, 50, 95, 135], fill=(30, 120, 40))  # crown
    d.rectangle([150, 180, 300, 220], fill=(200, 25, 30))  # car body
    d.polygon([(180, 180), (200, 150), (260, 150), (280, 180)], fill=(200, 25, 30))  # cabin
    d.polygon([(190, 178), (205, 156), (255, 156), (270, 178)], fill=(170, 210, 240))  # window
    for cx in (185, 265):  # wheels
        d.ellipse([cx - 16, 206, cx + 16, 238], fill=(25, 25, 25))
    return img


def blank_like(image):
    """A uniform mid-grey image of the same size."""
    from PIL import Image

    return Image.new("RGB", image.size, (128, 128, 128))


def load_image(path: Path | None):
    if path is None:
        return default_image()
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: no such image") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not an image PIL can read ({exc})") from None


@dataclass
class Picture:
    """One image to caption: its name in reports (the path as given, or DRAWN), the file it came
    from (None for the drawing), the sha256 of that file's bytes, and its size. Decoded when
    used (`load`), so that a folder of many images is never all in memory at once."""

    name: str
    path: Path | None
    sha256: str | None
    size: tuple[int, int]

    def load(self) -> Any:
        """The RGB image."""
        return default_image() if self.path is None else load_image(self.path)

    def describe(self) -> dict:
        w, h = self.size
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "width": w,
            "height": h,
        }


def _picture(path: Path) -> Picture:
    size = load_image(path).size  # decoded whole once: a truncated file is found here
    return Picture(str(path), path, hashlib.sha256(path.read_bytes()).hexdigest(), size)


def collect(paths: tuple[Path, ...] | list[Path]) -> tuple[list[Picture], list[str]]:
    """The images to caption, and one note per file skipped.

    Each path is an image file or a folder. A folder gives the images directly inside it, in name
    order; a file in it that PIL cannot read (notes.txt, a PDF) is skipped with a note naming it,
    since a folder of cartoons often holds other things; hidden files (.DS_Store) and sub-folders
    are passed over silently. A file named on its own must be an image (InputError otherwise), and
    a folder must hold at least one. No paths: the built-in drawing.

    Example: `pictures, notes = collect([Path("cartoons")])`
    """
    if not paths:
        return [Picture(DRAWN, None, None, SIZE)], []
    pictures: list[Picture] = []
    notes: list[str] = []
    for path in paths:
        if not path.is_dir():
            pictures.append(_picture(path))
            continue
        found = 0
        for f in sorted(path.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            try:
                pictures.append(_picture(f))
            except InputError:
                notes.append(f"skipped {f}: not an image PIL can read")
                continue
            found += 1
        if not found:
            raise InputError(f"--image {path}: no image PIL can read in this folder")
    return pictures, notes
