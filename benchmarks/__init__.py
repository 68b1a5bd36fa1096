"""Benchmarks of sfn-activities against a bare boto3 loop: ``nox -s bench``."""
