"""The browser demo: stylise a content photo with a style painting by two methods, side by side."""
import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (after the analytics switch)

from model import available_methods  # noqa: E402
from model.images import ImageError
from model.stylize import stylize
from model.weights import WeightsError

DEFAULT_PAIR = ("a2k_free", "all2all_free")


def build(weights_dir=None, device=None):
    status = available_methods(weights_dir)
    runnable = [s.name for s in status.values() if s.available]
    missing = "\n".join(
        f"- **{s.label}** (`{s.name}`): missing " + ", ".join(f"`{wf.path}` from {wf.source}" for wf in s.missing)
        for s in status.values() if not s.available
    )

    def run(content, style, left, right, size, alpha, preserve):
        if content is None or style is None:
            raise gr.Error("Upload a content photo and a style painting first.")
        try:
            return tuple(
                stylize(content, style, m, int(size), float(alpha), bool(preserve), weights_dir, device)
                for m in (left, right)
            )
        except (ImageError, WeightsError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc

    with gr.Blocks(title="StyA2K Arena") as app:
        gr.Markdown("# StyA2K Arena\nAll-to-key attention (StyA2K) next to all-to-all attention.")
        with gr.Row():
            content = gr.Image(label="Content photo", type="pil", image_mode=None)
            style = gr.Image(label="Style painting", type="pil", image_mode=None)
        with gr.Row():
            left = gr.Dropdown(runnable, value=DEFAULT_PAIR[0], label="Left method")
            right = gr.Dropdown(runnable, value=DEFAULT_PAIR[1], label="Right method")
            size = gr.Slider(128, 1024, value=512, step=32, label="Output size (long side, px)")
            alpha = gr.Slider(0, 1, value=1, step=0.05, label="Style strength")
            preserve = gr.Checkbox(label="Preserve colours")
        go = gr.Button("Stylise", variant="primary")
        with gr.Row():
            out_left = gr.Image(label="Left", format="png")
            out_right = gr.Image(label="Right", format="png")
        if missing:
            gr.Markdown("Methods that need files you can download:\n" + missing)
        go.click(run, [content, style, left, right, size, alpha, preserve], [out_left, out_right], api_name="stylize")
    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description="StyA2K Arena demo")
    parser.add_argument("--weights-dir", default=os.environ.get("WEIGHTS_DIR"))
    parser.add_argument("--device", default=os.environ.get("DEVICE"))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7860")))
    args = parser.parse_args(argv)
    build(args.weights_dir, args.device).queue().launch(server_name=args.host, server_port=args.port)
