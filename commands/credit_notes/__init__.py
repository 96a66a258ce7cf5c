"""Credit notes: issue one on a finalized invoice (domain/credit_note.py has the rules)."""
