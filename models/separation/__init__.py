"""Channel-wise subband (CWS) voice / accompaniment separators (Liu et al., Interspeech 2021).

The mixture is split into K uniform subbands by a cosine-modulated FIR filter bank
(:mod:`models.separation.subband`), each subband goes through a complex STFT written as a
convolution (:mod:`models.separation.stft`), the subband spectra are stacked channel-wise
(eq. 6) and a UNet, MDenseNet or MMDenseNet (:mod:`models.separation.nets`, §2.1–2.2,
Table 1) predicts one sigmoid mask per source and subband channel; masked spectra go back
through the iSTFT and the synthesis bank (:class:`models.separation.separator.Separator`).
:mod:`models.separation.flops` counts the networks' multiply-adds as Table 2 reports them.
"""

from __future__ import annotations

from models.errors import ModelsError


class SeparationError(ModelsError, ValueError):
    """An invalid separator setting or input (unknown architecture, K, too short an input...)."""


# The submodules import SeparationError from here, so it is defined before them.
from models.separation.separator import ARCHS, Separator  # noqa: E402
from models.separation.stft import ConvSTFT  # noqa: E402
from models.separation.subband import PQMF  # noqa: E402

__all__ = ["ARCHS", "PQMF", "ConvSTFT", "SeparationError", "Separator"]
