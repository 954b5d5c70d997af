"""LHQ-SVC (Huang et al.): diffusion singing-voice conversion — content encoder, F0,
conditioning, evolvable diffusion decoder, MelGAN vocoder and the end-to-end pipeline.

Presets are registered by :mod:`models.lhq_svc.presets` (imported lazily by the registry).
"""

from models.lhq_svc.pipeline import SVCPipeline

__all__ = ["SVCPipeline"]
