"""Training, evaluation and export of the one-class product detector (served by app/detector/)."""
