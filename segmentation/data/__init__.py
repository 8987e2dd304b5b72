"""Where the orders come from: sources, the portable SQL, the engines that run it, the sample generator."""
