"""The prepaid credits read model: each grant with what is left, and its movements."""
