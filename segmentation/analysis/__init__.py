"""Checks and reports over a model: validate, backtest, the K scan, the HTML report."""
