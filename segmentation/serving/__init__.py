"""Training, signed model versions on disk, the service that answers with typed results, exports."""
