"""cellwall: micro-segmentation that sees, decides, proves, enforces and watches."""

__all__ = ["__version__"]
__version__ = "0.1.0"
