"""Turning an uploaded file into safe, square profile pictures.

Pillow opens the upload with only the JPEG, PNG, WebP and GIF decoders, refuses anything
over the pixel limit before decoding it, applies the EXIF orientation, crops to a centred
square and writes fresh WebP files: nothing of the original (EXIF, GPS, ICC, comments)
survives the re-encode.
"""

import io
import secrets
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
AVATAR_SIZES = {"large": 256, "small": 64}


@dataclass(frozen=True)
class AvatarFiles:
    large: ContentFile
    small: ContentFile


def open_image(upload, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Open an upload as a still RGB(A) image, or raise ValidationError saying why not."""
    if upload.size is not None and upload.size > max_bytes:
        raise ValidationError(
            f"That file is {upload.size / 1024 / 1024:.1f} MB; the limit is {max_bytes // 1024 // 1024} MB.",
            code="too_large",
        )
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(upload, formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ValidationError(
                    f"That image is {width}×{height} pixels; the limit is "
                    f"{max_pixels // 1_000_000} megapixels.",
                    code="too_many_pixels",
                )
            image.seek(0)  # the first frame of an animated GIF or WebP
            image.load()
    except ValidationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValidationError(
            f"That image has too many pixels; the limit is {max_pixels // 1_000_000} megapixels.",
            code="too_many_pixels",
        ) from exc
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        raise ValidationError(
            "That file is not a JPEG, PNG, WebP or GIF image we can read.",
            code="not_an_image",
        ) from exc
    upright: Image.Image = ImageOps.exif_transpose(image)
    if upright.mode not in ("RGB", "RGBA"):
        upright = upright.convert("RGBA" if "transparency" in upright.info or "A" in upright.mode else "RGB")
    return upright


def encode_webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # A new image with only pixels: no exif, icc_profile or xmp is passed to save().
    image.save(buffer, format="WEBP", quality=85, method=4)
    return buffer.getvalue()


def make_avatar_files(upload) -> AvatarFiles:
    """Square 256 px and 64 px WebP copies of the upload, under fresh random names."""
    image = open_image(upload, max_bytes=settings.AVATAR_MAX_BYTES, max_pixels=settings.AVATAR_MAX_PIXELS)
    side = min(image.size)
    square = ImageOps.fit(image, (side, side), method=Image.Resampling.LANCZOS)
    token = secrets.token_urlsafe(16)
    files = {}
    for label, size in AVATAR_SIZES.items():
        resized = square.resize((size, size), Image.Resampling.LANCZOS)
        clean = Image.new(resized.mode, resized.size)
        clean.paste(resized)
        files[label] = ContentFile(encode_webp(clean), name=f"{token}-{size}.webp")
    return AvatarFiles(large=files["large"], small=files["small"])
