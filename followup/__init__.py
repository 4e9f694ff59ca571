"""followup: residual-tumour assessment on follow-up breast MRI after cryoablation."""

__version__ = "0.1.0"
