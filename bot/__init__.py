"""The Slack adapter: a Bolt app on top of :mod:`segmentation`."""
