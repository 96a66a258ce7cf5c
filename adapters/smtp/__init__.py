"""Invoice email: SMTP settings and connection, composing mails from the outbox, the mailer."""
