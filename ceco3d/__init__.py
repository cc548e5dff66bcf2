"""ceco3d: center-collapse regularisation for long-tailed 3D semantic segmentation."""

__version__ = "0.1.0"
