"""The default test image, drawn here (so no licence question and no file to ship), and the
blank image the "image matters" check compares against."""

from __future__ import annotations

from pathlib import Path

from weightprep.errors import InputError

SIZE = (384, 288)


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
