"""Revenue read model: MRR/ARR, recognized revenue, subscriptions per plan and status, churn."""
