"""followup: residual-tumour assessment on follow-up breast MRI after cryoablation."""

__version__ = "0.1.0"
# The analysis algorithm's version: reports and analyses carry it (light: the listener imports it).
ALGORITHM_VERSION = __version__
