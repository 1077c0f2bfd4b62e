"""Clustering: config, exact 1-D k-means, index packing, clustered modules, compress, the .wclust file."""
