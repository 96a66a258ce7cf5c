"""Alert evaluation off the command path: an evaluator that follows the event log."""
