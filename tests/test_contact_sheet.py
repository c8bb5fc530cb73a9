"""Contact sheets: cells of CELL px whatever the images' sizes, captions wrapped and never cut."""
import numpy as np
from PIL import Image, ImageFont

from model.contact_sheet import CELL, FONT_SIZE, MARGIN, contact_sheet, wrap


def test_wrap_keeps_every_character_within_the_width():
    font = ImageFont.load_default(size=FONT_SIZE)
    text = "content: place_neuschwansteinCastle__" + "x" * 80 + " StyA2K (trained here)"
    lines = wrap(text, font, 200)
    assert "".join(lines) == text and len(lines) > 2
    assert all(font.getlength(line) <= 200 for line in lines)
    assert lines[0].endswith("_")  # broken after a separator when one fits


def test_cells_are_cell_sized_and_long_captions_add_lines():
    small = Image.new("RGB", (100, 50), (255, 0, 0))
    short = contact_sheet([[(small, "a"), (None, "b")]])
    long = contact_sheet([[(small, "a " * 200), (None, "b")]])
    assert short.width == long.width == 2 * (CELL + MARGIN) + MARGIN
    assert long.height > short.height
    red = np.all(np.asarray(short) == (255, 0, 0), axis=-1)
    assert red.sum(0).max() == CELL // 2 and red.sum(1).max() == CELL  # 100 x 50 fitted to 384 x 192
