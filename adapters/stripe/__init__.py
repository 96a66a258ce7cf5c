"""Stripe: the gateway (the payment-provider port on the official SDK), webhook intake (a
verified inbox, processed once) and its worker."""
