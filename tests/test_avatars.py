"""Profile pictures: accepted formats, limits, metadata stripping and removal."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db

URL = "/settings/profile/"


def upload(client, content: bytes, name="picture.png", content_type="image/png"):
    return client.post(
        URL, {"action": "avatar", "avatar": SimpleUploadedFile(name, content, content_type=content_type)}
    )


def stored(field) -> Image.Image:
    with field.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_upload_makes_square_256_and_64_webp_copies(alice_client, alice, fmt):
    """Any accepted format becomes two square WebP files."""
    response = upload(alice_client, image_bytes(fmt, size=(300, 200)), name=f"holiday-portrait.{fmt.lower()}")
    assert response.status_code == 302
    alice.refresh_from_db()
    large, small = stored(alice.avatar_large), stored(alice.avatar_small)
    assert (large.format, large.size) == ("WEBP", (256, 256))
    assert (small.format, small.size) == ("WEBP", (64, 64))
    assert alice.avatar_large.name.endswith("-256.webp")
    assert "holiday-portrait" not in alice.avatar_large.name  # random names, never the uploaded one


def test_a_new_upload_replaces_the_old_files_under_new_names(
    alice_client, alice, django_capture_on_commit_callbacks
):
    upload(alice_client, image_bytes())
    alice.refresh_from_db()
    first = alice.avatar_large.name
    with django_capture_on_commit_callbacks(execute=True):
        upload(alice_client, image_bytes())
    alice.refresh_from_db()
    assert alice.avatar_large.name != first
    assert not alice.avatar_large.storage.exists(first)


def test_exif_and_gps_are_stripped_and_orientation_applied(alice_client, alice):
    """A phone photo's metadata never reaches other people; its rotation does."""
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    # Left half red, right half blue; orientation 6 means "rotate 90° clockwise to view".
    image.paste((255, 0, 0), (0, 0, 200, 200))
    image.paste((0, 0, 255), (200, 0, 400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SpyCam"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS IFD
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    assert b"SpyCam" in buffer.getvalue()

    assert (
        upload(alice_client, buffer.getvalue(), name="photo.jpg", content_type="image/jpeg").status_code
        == 302
    )
    alice.refresh_from_db()
    with alice.avatar_large.open("rb") as fh:
        raw = fh.read()
    assert b"SpyCam" not in raw
    assert b"Exif" not in raw
    result = Image.open(io.BytesIO(raw))
    assert not result.getexif()
    assert "exif" not in result.info and "icc_profile" not in result.info
    # After rotating 90° clockwise, red (was left) is on top and blue at the bottom.
    top = result.convert("RGB").getpixel((128, 10))
    bottom = result.convert("RGB").getpixel((128, 245))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_keeps_its_first_frame(alice_client, alice):
    frames = [Image.new("RGB", (80, 80), colour) for colour in [(0, 200, 0), (200, 0, 0)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert upload(alice_client, buffer.getvalue(), name="a.gif", content_type="image/gif").status_code == 302
    alice.refresh_from_db()
    result = stored(alice.avatar_large)
    assert getattr(result, "n_frames", 1) == 1
    red, green, _ = result.convert("RGB").getpixel((128, 128))
    assert green > 150 and red < 60


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"this is not an image at all", "fake.png", "not a JPEG, PNG, WebP or GIF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "x.svg", "not a JPEG, PNG, WebP or GIF"),
        (image_bytes("BMP"), "x.bmp", "not a JPEG, PNG, WebP or GIF"),
        (image_bytes("TIFF"), "x.tiff", "not a JPEG, PNG, WebP or GIF"),
        (image_bytes("PNG")[:60], "truncated.png", "not a JPEG, PNG, WebP or GIF"),
    ],
)
def test_files_that_are_not_accepted_images_get_a_form_error(alice_client, alice, content, name, message):
    """Wrong types and broken files are a message on the form, never a 500."""
    response = upload(alice_client, content, name=name)
    assert response.status_code == 422
    assert message in response.content.decode()
    alice.refresh_from_db()
    assert not alice.avatar_large


def test_files_over_5_mb_are_refused(alice_client, alice):
    big = image_bytes("PNG") + b"\0" * (5 * 1024 * 1024)
    response = upload(alice_client, big)
    assert response.status_code == 422
    assert "the limit is 5 MB" in response.content.decode()


def test_images_over_the_pixel_limit_are_refused_before_decoding(alice_client, alice, settings):
    settings.AVATAR_MAX_PIXELS = 100 * 100
    response = upload(alice_client, image_bytes("PNG", size=(200, 200)))
    assert response.status_code == 422
    assert "megapixels" in response.content.decode() or "too many pixels" in response.content.decode()


def test_decompression_bomb_is_refused(alice_client):
    """A small file that claims enormous dimensions is refused, not decoded."""
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < 5 * 1024 * 1024
    response = upload(alice_client, buffer.getvalue())
    assert response.status_code == 422
    assert "pixels" in response.content.decode()


def test_a_refused_upload_keeps_the_previous_picture(alice_client, alice):
    upload(alice_client, image_bytes())
    alice.refresh_from_db()
    before = alice.avatar_large.name
    upload(alice_client, b"garbage")
    alice.refresh_from_db()
    assert alice.avatar_large.name == before


def test_remove_picture_returns_to_the_generated_avatar(
    alice_client, alice, django_capture_on_commit_callbacks
):
    upload(alice_client, image_bytes())
    alice.refresh_from_db()
    storage, old = alice.avatar_large.storage, alice.avatar_large.name
    assert storage.exists(old)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("accounts:remove_avatar"))
    assert response.status_code == 302
    alice.refresh_from_db()
    assert not alice.avatar_large and not alice.avatar_small
    assert not storage.exists(old)
    body = alice_client.get("/u/alice/").content.decode()
    assert "avatar--c" in body and ">AL<" in body


def test_generated_avatar_colour_is_stable_per_username(alice, bob):
    assert alice.avatar_colour == type(alice)(username="alice").avatar_colour
    assert 0 <= bob.avatar_colour < 12


def test_uploaded_picture_is_shown_on_the_profile(alice_client, bob_client, alice):
    upload(alice_client, image_bytes())
    alice.refresh_from_db()
    body = bob_client.get("/u/alice/").content.decode()
    assert alice.avatar_large.url in body
    picture = bob_client.get(alice.avatar_large.url)
    assert picture.status_code == 200


def test_the_avatar_tag_draws_what_its_template_drew(alice, bob):
    """{% avatar %} builds its HTML in Python (a room page draws about sixty): the same
    markup the inclusion template gave, what people typed escaped, a newline after it."""
    from django.template import Context, Template

    def avatar(person, size):
        return Template("{% load avatars %}[{% avatar person size %}]").render(
            Context({"person": person, "size": size})
        )

    bob.display_name = "Bob <b>\"&'"
    colour = bob.avatar_colour
    assert avatar(bob, 24) == (
        f'[<span class="avatar avatar--24 avatar--c{colour}" role="img" '
        'aria-label="Bob &lt;b&gt;&quot;&amp;&#x27;">B&lt;</span>\n]'
    )
    assert avatar(None, 36) == (
        '[<span class="avatar avatar--36 avatar--gone" role="img" aria-label="Deleted account">?</span>\n]'
    )
    alice.avatar_small.name = "avatars/a&b-64.webp"
    alice.avatar_large.name = "avatars/a-256.webp"
    assert avatar(alice, 36) == (
        f'[<img class="avatar avatar--36" src="{alice.avatar_small.url.replace("&", "&amp;")}" width="36" '
        'height="36" alt="Alice Liddell">\n]'
    )
    assert alice.avatar_large.url in avatar(alice, 128)
