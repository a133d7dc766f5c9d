"""What the sidecar observes per worker, as named time series. Signals know nothing of rules."""
