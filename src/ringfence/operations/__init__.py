"""Operations: what the people running ringfence watch (Prometheus metrics, JSON logs)."""
