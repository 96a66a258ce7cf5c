"""Alert commands: create and delete alerts; record what the evaluator saw crossing them."""
