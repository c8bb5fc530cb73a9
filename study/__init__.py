"""The blind 2AFC preference study: store (database), prepare (stimuli), analysis and analyze (report).

Never imports torch, gradio or model/: stimuli are rendered by `python -m model.stylize` in a subprocess."""
