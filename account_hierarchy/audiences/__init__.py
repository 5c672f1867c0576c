"""The audiences stage: account and user audiences as of every hour, with their reasons."""
