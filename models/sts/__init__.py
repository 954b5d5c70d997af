"""Speech-to-singing (Parekh et al., ICASSP 2020): an encoder-decoder network that turns a
log-magnitude speech spectrogram and a binary melody image into a singing log-magnitude
spectrogram (with an optional phoneme head), plus the paper's pre-processing (§2.1),
Griffin-Lim synthesis (§2.4) and objective metrics, LSD and raw chroma accuracy (§3.1).
"""

from __future__ import annotations


class StsError(ValueError):
    """Bad input to the speech-to-singing code; the message is one line naming the fix."""
