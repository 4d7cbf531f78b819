"""Image files into one uint8 array: ``pixels`` (one file, any pixel format), ``decode`` (many files on every
core, with notes), ``array`` (pixels in memory or mapped from a file) and ``cache`` (decoded once per
fingerprint and size, on disk)."""
