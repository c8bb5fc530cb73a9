"""The words on the vote buttons, keyed on the store's vote vocabulary (`study.schema.CHOICES`)."""
CHOICE_LABELS = {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both bad"}
STACKED_LABELS = {"left": "Top is better", "right": "Bottom is better"}  # the same answers, images stacked
