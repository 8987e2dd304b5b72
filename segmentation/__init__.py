"""Customer segmentation: order history → RFM → KMeans → named segments with actions.

Pure domain code: it never imports Slack. Data flows one way:
source → orders → RFM → model → named segments → answers.
"""

__version__ = "0.1.0"
