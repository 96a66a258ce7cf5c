"""Stripe: webhook intake (a verified inbox, processed once) and its worker."""
