"""Contact sheets of stylised outputs, large enough to judge them: a row per (content, style) pair with
the content, the style, then each method's output, every cell CELL px and captioned in full."""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .files import output_name
from .images import open_image

CELL = 384  # side of a cell's image area, pixels
FONT_SIZE = 18
MARGIN = 6  # pixels between cells and around captions
BREAKS = " _-"  # a caption line may break after these characters


def wrap(text, font, width):
    """Lines of `text` each at most `width` px wide in `font`: broken after a BREAKS character when one
    fits, else between characters; nothing is dropped."""
    lines, line = [], ""
    for char in text:
        if font.getlength(line + char) <= width:
            line += char
            continue
        cut = max(line.rfind(b) for b in BREAKS)
        head, line = (line[: cut + 1], line[cut + 1 :] + char) if cut >= 0 else (line, char)
        lines.append(head)
    return lines + [line] if line else lines


def fit(img, side):
    """`img` scaled (aspect kept, Lanczos) so that its longer side is `side`."""
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)


def contact_sheet(rows, cell=CELL):
    """rows: lists of (PIL image or None, caption), all of one length. Each image is fitted into a
    cell x cell square (None: left blank), its caption wrapped below it. Returns an RGB image."""
    font = ImageFont.load_default(size=FONT_SIZE)
    captions = [[wrap(caption, font, cell) for _, caption in row] for row in rows]
    line_height = font.getbbox("Ag")[3] + 2
    strip = MARGIN + line_height * max(len(lines) for row in captions for lines in row)
    width, height = cell + MARGIN, cell + strip + MARGIN
    sheet = Image.new("RGB", (len(rows[0]) * width + MARGIN, len(rows) * height + MARGIN), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (img, _) in enumerate(row):
            x, y = MARGIN + c * width, MARGIN + r * height
            if img is not None:
                img = fit(img.convert("RGB"), cell)
                sheet.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
            for i, line in enumerate(captions[r][c]):
                draw.text((x, y + cell + MARGIN + i * line_height), line, fill="black", font=font)
    return sheet


def sheet_from_outputs(contents, styles, methods, folder, labels):
    """The contact sheet of the outputs saved in `folder` as `output_name(content, style, method)`:
    contents and styles are image paths, labels {method: caption}; a missing output is a blank cell
    captioned as missing."""
    rows = []
    for content in contents:
        for style in styles:
            row = [(open_image(content), f"content: {Path(content).stem}"), (open_image(style), f"style: {Path(style).stem}")]
            for method in methods:
                path = Path(folder) / output_name(content, style, method)
                row.append((open_image(path), labels[method]) if path.is_file() else (None, f"{labels[method]} (missing)"))
            rows.append(row)
    return contact_sheet(rows)
