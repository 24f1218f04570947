"""Benchmarks: commands that print medians and ratios against torch measured in the same process."""
