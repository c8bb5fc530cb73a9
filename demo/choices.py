"""The words on the vote buttons, keyed on the store's vote vocabulary (`study.schema.CHOICES`)."""
CHOICE_LABELS = {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both bad"}
STACKED_LABELS = {"left": "Top is better", "right": "Bottom is better"}  # the same answers, images stacked
# the Battle tab's buttons: its two results are "Model A" and "Model B", whatever the layout puts them
BATTLE_LABELS = {"left": "A is better", "right": "B is better", "tie": "Tie", "both_bad": "Both bad"}
# the Battle tab's keys (shown on its buttons; a key press clicks the button: the same event and limits)
BATTLE_KEYS = {"left": "A", "right": "B", "tie": "T", "both_bad": "N"}
