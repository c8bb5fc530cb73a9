"""The study page's screen and browser check, before consent is asked.

The page's script measures the viewport (MEASURE: CSS px and the device pixel ratio); the server reads the
browser and device type from the User-Agent header, and decides whether each image of a trial gets the
study's min_image_px there (demo.study_trial.image_px). A screen too small is asked to rotate or enlarge
the window once; still too small, the participant is sent back (to Prolific with the study's screen-out
code) and counted (Store.record_screen_out). A client that sends no measure (an API client) is not
checked, and its screen is stored as unknown."""
import re

from study.schema import DEVICES

from .study_trial import image_px
from .study_vote import way_back

# the study page's events that measure: their last input (a hidden gr.JSON) becomes the viewport
MEASURE = ("(...inputs) => [...inputs.slice(0, -1), "
           "{width: window.innerWidth, height: window.innerHeight, ratio: window.devicePixelRatio}]")
MAX_PX = 100_000
BROWSERS = (("Edge", r"Edg(?:e|A|iOS)?/(\d+)"), ("Opera", r"OPR/(\d+)"), ("Samsung Internet", r"SamsungBrowser/(\d+)"),
            ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"), ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
            ("Safari", r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"))


def browser_of(user_agent):
    """"Name major-version" of the browser a User-Agent header names, or "other"."""
    for name, pattern in BROWSERS:
        found = re.search(pattern, user_agent)
        if found:
            return f"{name} {found.group(1)}"
    return "other"


def device_of(user_agent):
    """One of DEVICES: "phone" (a mobile browser), "tablet" (iPad, Android without "Mobile", "Tablet") or "desktop"."""
    if re.search(r"iPad|Tablet|Android(?!.*Mobile)", user_agent):
        return DEVICES[1]
    if re.search(r"Mobi|iPhone|iPod", user_agent):
        return DEVICES[0]
    return DEVICES[2]


def read_screen(measured, user_agent):
    """The screen record (Store's SCREEN_FIELDS) of what MEASURE sent ({width, height, ratio}) and the
    User-Agent header; None when the page sent no usable measure."""
    if not isinstance(measured, dict):
        return None
    width, height, ratio = (measured.get(k) for k in ("width", "height", "ratio"))
    numbers = (width, height, ratio)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
        return None
    if not (0 < width <= MAX_PX and 0 < height <= MAX_PX and 0 < ratio <= 20):
        return None
    agent = (user_agent or "")[:512]
    return {"viewport_width": int(width), "viewport_height": int(height), "pixel_ratio": round(float(ratio), 3),
            "browser": browser_of(agent)[:40], "device": device_of(agent)}


def shortfall(screen, settings):
    """None when the screen fits the study (Store.study: min_image_px, show_references) or was not
    measured, else the CSS px width each image would get there."""
    if screen is None or not settings["min_image_px"]:
        return None
    got = image_px(screen["viewport_width"], screen["viewport_height"], settings["show_references"])
    return None if got >= settings["min_image_px"] else max(0, int(got))


def too_small_text(got, settings):
    """What a participant whose screen is too small is asked to do (Markdown)."""
    return (f"**Your screen is too small for this study.** Each of the two pictures needs at least "
            f"{settings['min_image_px']} pixels of width, and your window gives it {got}. On a phone, hold it "
            "upright; on a computer, make the browser window larger (or zoom out with Ctrl and -). "
            "Then click **Check again**.")


def screened_out_html(screen_out_code, prolific):
    """What a participant whose screen stayed too small sees: why, and Prolific's way back."""
    text = ("<h2>This study needs a larger screen</h2><p>Your screen is still too small to show the pictures "
            "large enough, so the study cannot start here. None of your answers were recorded, only your "
            "screen's size and your browser's type. You can close this page, or open the study's link on a "
            "larger screen.</p>")
    return text + way_back(screen_out_code, prolific)
