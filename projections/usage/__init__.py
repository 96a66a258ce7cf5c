"""Usage totals read model: hour, day and month buckets and the current quota window."""
