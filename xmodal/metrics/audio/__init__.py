"""Audio and speech metrics: SNR, SI-SNR, SI-SDR (torchmetrics), STOI/ESTOI (pystoi), PESQ (ITU P.862).

Every function takes numpy arrays or torch tensors, one signal or a batch, and checks its inputs with typed
errors (``xmodal.errors``). MOS lives in :mod:`xmodal.metrics.mos`.
"""

from xmodal.metrics.audio.intelligibility import estoi, stoi
from xmodal.metrics.audio.pesq_itu import pesq, pesq_batch
from xmodal.metrics.audio.ratios import si_sdr, si_snr, snr

__all__ = ["snr", "si_snr", "si_sdr", "stoi", "estoi", "pesq", "pesq_batch"]
