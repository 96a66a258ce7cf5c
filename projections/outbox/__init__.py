"""The outbox read model: one row per email to send (invoices, payment failures, credit notes)."""
