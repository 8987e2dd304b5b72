"""The `segment` command line: an adapter over the segmentation package, beside the bot."""
