"""Data: the synthetic singing corpus, loaders for its (and real datasets') layouts, features.

Modules
-------
* :mod:`models.data.synth` — source–filter voice (glottal source with jitter / shimmer /
  vibrato / breathiness, per-phoneme formant filters, consonant noise); ``sing`` and ``speak``.
* :mod:`models.data.music` — songs (lyrics as CV / CVC syllables, melody, chords) and the stereo
  accompaniment (keys, plucked arpeggio, bass, kick / snare / hi-hat, panning).
* :mod:`models.data.corpus` — singers, the corpus writer (:func:`synthesize_corpus`) and layouts.
* :mod:`models.data.features` — the feature contract: :class:`MelConfig`, :func:`log_mel`
  (80 bins, 512 FFT / window, hop 128, LHQ-SVC §IV.B) and :func:`dio_f0` (DIO + StoneMask).
* :mod:`models.data.datasets` — :class:`SingingCorpus`, :class:`MusdbDataset`,
  :class:`NusDataset` (real datasets in the same layouts load the same way; bad files are
  skipped with a warning, or raise with ``strict=True``).
* :mod:`models.data.cache` — :class:`FeatureCache`, ``.npz`` entries keyed by
  sha256(audio bytes + labels bytes + parameters).

Corpus layout (``compress data synth --out DIR``)::

    DIR/dataset_raw/<singer>/<song>.wav                  sung, mono PCM_16 (RVC / so-vits)
    DIR/musdb/{train,test}/<song>__<singer>/{mixture,vocals,accompaniment}.wav   (MUSDB18-HQ)
    DIR/nus48e/<singer>/{sing,read}/<song>.wav + .txt    (NUS-48E; "start_s end_s phone")
    DIR/labels/<singer>/<song>_{sung,spoken}.npz         f0 (Hz, 0 = unvoiced), phonemes
    DIR/meta.json                                        seed, rate, phonemes, singers, songs, clips

Example::

    from models.data import CorpusConfig, synthesize_corpus, SingingCorpus, FeatureCache, MelConfig
    synthesize_corpus("corpus", CorpusConfig(singers=4, minutes=2, seed=0))
    for item in SingingCorpus("corpus", sample_rate=16000):
        print(item.clip.id, item.audio.shape, item.f0.shape, item.phonemes is not None)
    feats = FeatureCache("cache").get("corpus/dataset_raw/singer00/song000.wav", MelConfig(16000))

Command line: ``compress data synth --out DIR [--singers N] [--minutes M] [--seed S]
[--sample-rate SR]`` (``--minutes``: sung audio per singer, approximately).
"""

from models.data.cache import FeatureCache, Features
from models.data.corpus import CorpusConfig, CorpusSummary, make_singers, synthesize_corpus
from models.data.datasets import MusdbDataset, NusDataset, SingingCorpus
from models.data.features import MelConfig, dio_f0, log_mel
from models.data.synth import PHONEMES, VoiceIdentity

__all__ = [
    "PHONEMES",
    "CorpusConfig",
    "CorpusSummary",
    "FeatureCache",
    "Features",
    "MelConfig",
    "MusdbDataset",
    "NusDataset",
    "SingingCorpus",
    "VoiceIdentity",
    "dio_f0",
    "log_mel",
    "make_singers",
    "synthesize_corpus",
]
