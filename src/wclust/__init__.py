"""wclust: cluster a transformer's weights with exact 1-D k-means, run on indices + codebook."""
from .clustering.compress import compress
from .clustering.config import ClusterConfig
from .errors import FormatError, WclustError
from .clustering.io import load, read_header, save
from .clustering.kmeans import KMeans1D
from .sources.models import load_source
from .clustering.compute import set_compute_dtype
from .clustering.modules import ClusteredConv2d, ClusteredEmbedding, ClusteredLinear, ClusteredModule, ClusteredWrapper

__all__ = [
    "compress", "ClusterConfig", "save", "load", "read_header", "load_source", "KMeans1D",
    "ClusteredModule", "ClusteredLinear", "ClusteredConv2d", "ClusteredEmbedding", "ClusteredWrapper",
    "set_compute_dtype",
    "FormatError", "WclustError",
]
__version__ = "0.1.0"
