"""The casting-defect model and everything to train and evaluate it (no Kafka or Redis here).

Import the public names from ``models.lstm_model``; importing this package loads nothing heavy.
"""
