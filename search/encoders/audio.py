"""The projected audio encoder: log-mel -> EfficientNet-Lite0 -> the active text space.

A CNN classifier (ImageNet EfficientNet-Lite0 fine-tuned on log-mels, ``training.audio``)
reaches any encoder's text space two ways, mixed like the bundled image path:

* the label bridge: classifier probabilities (top ``top_k``) mixing the text embeddings of the
  labels' prompts — works for any text tower, no retraining, embeddings cached per encoder id;
* a learned projection of the 1,280-d pooled features, trained with InfoNCE against the prompt
  embeddings of one text space; it is used only when the active encoder embeds the training
  prompts to the same vectors (checked at load), else the bridge runs alone.

Open set (``AudioCheckpoint.confidence_power``, None in checkpoints before it): the classifier
knows 67 labels, and without this every sound lands on its nearest one at full strength — a
laughing clip the classifier half-thinks is a dog scored 0.97 against "a dog barking". Each
window keeps the share ``g = max softmax ** power`` of its direction and moves the rest onto
its own part that no label describes (its projection minus the label prompts' span; a
generic "unknown sound" direction where the projection is not in the active space), so its
cosine to any label query is scaled by about ``g`` while similar unknown sounds stay near each
other (``abstain``).

``load_audio_head(encoder)`` returns None (audio is then skipped as "no audio encoder") with a
logged warning when the weights are missing or unreadable, never a traceback.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.checkpoints import AudioCheckpoint, FrontEnd
from search.encoders.audio_labels import prompts
from search.encoders.base import AUDIO_SAMPLE_RATE, l2_normalize
from search.hashing import file_sha256

if TYPE_CHECKING:
    import torch

    from search.encoders.base import Encoder

log = logging.getLogger(__name__)

WEIGHTS_FILE = "audio_effnet_lite0.pt"
N_FFT, HOP, N_MELS, FMIN, FMAX = 1024, 320, 128, 20.0, 8000.0
LOG_EPS = 1e-6
PAD_QUANTUM = AUDIO_SAMPLE_RATE // 2  # and to a multiple of 0.5 s, so batching never changes a vector
BATCH = 16
PROBE_MIN_COS = 0.99
# what a sound no label describes is called, for the open set's fallback direction
NEUTRAL_PROMPTS = ("a sound", "an unknown sound", "a recording of a sound", "some noise")
DIGIT_FRAMES = AUDIO_SAMPLE_RATE // HOP  # the digit expert reads the first second
DIGIT_SAMPLES = (DIGIT_FRAMES - 1) * HOP + N_FFT  # ... which centred STFT frames reach

_PROMPT_CACHE: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
_LOCK = threading.Lock()


def shipped_weights() -> Path:
    return Path(str(resources.files("search.encoders") / "weights" / WEIGHTS_FILE))


def load_net(ckpt: AudioCheckpoint) -> torch.nn.Module:
    """The checkpoint's network in eval mode: one, or the ensemble of ``state`` and ``members``."""
    probe = ckpt.text_probe
    proj_dim = int(probe.shape[1]) if probe is not None else None
    from search.encoders.audio_nets import AudioEnsemble, build_net  # heavy: torch

    nets = []
    for state in [ckpt.state, *ckpt.members]:
        net = build_net(len(ckpt.labels), proj_dim, pretrained=False)
        net.load_state_dict({k: v.float() for k, v in state.items()})
        nets.append(net)
    return (nets[0] if len(nets) == 1 else AudioEnsemble(nets)).eval()


def noise_floor(fb: np.ndarray, bits: int = 8, factor: float = 4.0) -> np.ndarray:
    """Per-mel-band power of white noise ``factor`` times ``bits``-bit quantisation noise.

    Added to the mel power before the log, it hides detail under about -47 dBFS (8 bits, x4),
    so 8-bit and 16-bit recordings give near-identical log-mels and quantisation noise stops
    being a cue the network learns (measured in ``MODEL_CARD_audio.md``).
    """
    step = 2.0 / 2**bits
    window_energy = float((np.hanning(N_FFT + 1)[:-1] ** 2).sum())  # torch's periodic Hann
    return (factor * step**2 / 12.0 * window_energy * np.asarray(fb, np.float64).sum(axis=1)).astype(np.float32)


def stored_floor(front: FrontEnd) -> np.ndarray | None:
    """The noise floor of a checkpoint's front end; None: the first checkpoints' 1e-6."""
    return None if front.mel_floor is None else front.mel_floor.float().numpy()


def silence_bands(floor: np.ndarray | None) -> np.ndarray:
    """What digital silence (and padding) is in raw log-mel, per band: float32 [mels, 1]."""
    base = np.zeros(N_MELS, np.float32) if floor is None else np.asarray(floor, np.float32)
    return np.log(base + LOG_EPS)[:, None].astype(np.float32)


class LogMel:
    """Waveforms -> log(mel power + floor), standardised by one global mean/std (torch).

    ``floor`` is a per-band noise floor (``noise_floor``); None keeps the 1e-6 of the first
    checkpoints.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, fb: np.ndarray | None = None,
                 floor: np.ndarray | None = None) -> None:
        import torch

        if fb is None:  # checkpoints carry the filterbank: librosa's first call JIT-compiles for seconds
            import librosa

            fb = librosa.filters.mel(sr=AUDIO_SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
        self.fb = torch.as_tensor(np.asarray(fb, dtype=np.float32))
        self.window = torch.hann_window(N_FFT)
        self.mean, self.std = mean, std
        self.floor = (torch.full((N_MELS, 1), LOG_EPS) if floor is None
                      else torch.as_tensor(np.asarray(floor, np.float32)).reshape(-1, 1))

    @classmethod
    def stored(cls, front: FrontEnd, fb: np.ndarray | None) -> LogMel:
        """The front end a checkpoint (or its digit expert) was trained with."""
        return cls(front.mel_mean, front.mel_std, fb, stored_floor(front))

    def raw(self, waves: torch.Tensor) -> torch.Tensor:
        """float32[n, samples] -> unstandardised log-mel [n, 128, frames]."""
        import torch

        spec = torch.stft(waves, N_FFT, HOP, window=self.window.to(waves.device), center=True,
                          pad_mode="constant", return_complex=True)
        power = spec.real**2 + spec.imag**2
        return torch.log(self.fb.to(waves.device) @ power + self.floor.to(waves.device))

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        return (self.raw(waves) - self.mean) / self.std


def pad_length(n: int, min_seconds: float) -> int:
    return max(int(min_seconds * AUDIO_SAMPLE_RATE), -(-n // PAD_QUANTUM) * PAD_QUANTUM)


# -- the head ---------------------------------------------------------------------------------
class AudioModel:
    """An ``AudioHead``: windows -> vectors in one encoder's text space."""

    def __init__(self, ckpt: AudioCheckpoint, encoder: Encoder, *, use_projection: bool | None = None):
        from search.encoders.audio_nets import FEATURE_DIM, DigitNet  # heavy: torch

        self.feature_dim = FEATURE_DIM
        self.labels: list[str] = list(ckpt.labels)
        self.temperature = float(ckpt.temperature)
        self.top_k = int(ckpt.top_k)
        self.min_seconds = float(ckpt.min_seconds)
        probe = ckpt.text_probe
        self.net: Any = load_net(ckpt)  # its .projection is read
        self.max_gain_db = ckpt.max_gain_db
        fb = ckpt.mel_fb
        fb_np = None if fb is None else fb.float().numpy()
        self.front = LogMel.stored(ckpt.front, fb_np)
        self.digits = None  # the spoken-digit expert: (its net, the digit labels' columns)
        # its own front end when it was trained on another one (None: it reads the main log-mel)
        self.digit_front: tuple[LogMel, float | None] | None = None
        if ckpt.digit_state is not None:
            digit_net = DigitNet()
            digit_net.load_state_dict({k: v.float() for k, v in ckpt.digit_state.items()})
            digit_net.eval()
            self.digits = (digit_net, [self.labels.index(str(d)) for d in range(10)])
            df = ckpt.digit_front
            if df is not None:
                self.digit_front = (LogMel.stored(df, fb_np), df.max_gain_db)
        self.label_vectors = label_embeddings(encoder, self.labels)
        fits = probe is not None and _same_space(self.label_vectors, probe.float().numpy())
        self.projection_fits = fits
        if use_projection is None:
            use_projection = fits
        elif use_projection and not fits:
            raise ValueError(f"the audio projection was trained for {ckpt.text_space!r}, "
                             f"not for encoder {encoder.id!r}")
        self.uses_projection = bool(use_projection)
        self.alpha = float(ckpt.alpha) if use_projection else 1.0
        self.confidence_power = ckpt.confidence_power
        # an orthonormal basis of the label prompts' span, and what is outside it for a window
        # whose own projection cannot say (the projection unused in this text space)
        self.label_basis = np.linalg.qr(self.label_vectors.T.astype(np.float64))[0].astype(np.float32)
        self.neutral = off_labels(neutral_embedding(encoder), self.label_basis)
        mode = "mix" if 0.0 < self.alpha < 1.0 else ("bridge" if self.alpha == 1.0 else "proj")
        open_set = "" if self.confidence_power is None else "-open"
        self.id = f"audio-effnet-lite0-v{ckpt.format_version}{open_set}:{mode}"
        self.fingerprint = self.id  # load_audio_head adds the weights' hash
        self._lock = threading.Lock()

    # backbone outputs --------------------------------------------------------------------------
    def forward(self, waveforms: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Windows -> (logits, features, projection or None), loudness-normalised first."""
        import torch

        n = len(waveforms)
        logits = np.zeros((n, len(self.labels)), np.float32)
        feats = np.zeros((n, self.feature_dim), np.float32)
        proj = None if self.net.projection is None else np.zeros((n, self.net.projection.out_features), np.float32)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(waveforms):
            by_len.setdefault(pad_length(len(w), self.min_seconds), []).append(i)
        with self._lock, torch.inference_mode():
            for length, idx in by_len.items():
                for s in range(0, len(idx), BATCH):
                    part = idx[s : s + BATCH]
                    raw = [np.asarray(waveforms[i], np.float32).reshape(-1)[:length] for i in part]
                    mel = self.front(_batch(raw, length, self.max_gain_db))
                    lg, ft, pj = self.net(mel)
                    digit_mel = mel
                    if self.digit_front is not None and self.digits is not None:
                        # the first second (+ the STFT's reach) through the expert's front end
                        front, gain = self.digit_front
                        digit_mel = front(_batch(raw, min(length, DIGIT_SAMPLES), gain))
                    logits[part], feats[part] = self._with_digits(lg, digit_mel).numpy(), ft.numpy()
                    if proj is not None and pj is not None:
                        proj[part] = pj.numpy()
        return logits, feats, proj

    def _with_digits(self, logits: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Log-probabilities where the expert splits the joint classifier's digit mass."""
        if self.digits is None:
            return logits
        import torch

        net, cols = self.digits
        logp = logits.log_softmax(dim=1)
        mass = torch.logsumexp(logp[:, cols], dim=1, keepdim=True)
        logp[:, cols] = mass + net(mel[:, :, :DIGIT_FRAMES]).log_softmax(dim=1)
        return logp

    def combine(self, logits: np.ndarray, proj: np.ndarray | None, alpha: float | None = None,
                power: float | None = None, open_set: bool = True) -> np.ndarray:
        """Windows' outputs -> vectors: the bridge/projection mix (``alpha``, default the
        checkpoint's), then, with ``open_set``, the abstention (``power``, default the
        checkpoint's; none where both are None)."""
        alpha = self.alpha if alpha is None else alpha
        power = self.confidence_power if power is None else power
        route = self.digits[1] if self.digits is not None else None
        vectors = mix(logits, proj, self.label_vectors, alpha, self.temperature, self.top_k, route)
        if not open_set or power is None:
            return vectors
        own = proj if self.uses_projection else None
        return abstain(vectors, logits, own, self.label_basis, self.neutral, power)

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        if len(waveforms) == 0:
            return np.zeros((0, self.label_vectors.shape[1]), np.float32)
        logits, _, proj = self.forward(waveforms)
        return self.combine(logits, proj)


def bridge(logits: np.ndarray, label_vectors: np.ndarray, temperature: float, top_k: int) -> np.ndarray:
    """The label bridge: top-k class probabilities mixing the labels' prompt embeddings."""
    z = logits / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    k = min(top_k, p.shape[1])
    if k < p.shape[1]:
        cut = np.partition(p, -k, axis=1)[:, -k][:, None]
        p = np.where(p >= cut, p, 0.0)
    return l2_normalize(p @ label_vectors)


def mix(logits: np.ndarray, proj: np.ndarray | None, label_vectors: np.ndarray, alpha: float,
        temperature: float, top_k: int, route: Sequence[int] | None = None) -> np.ndarray:
    """``alpha`` x bridge + (1 - alpha) x projection, renormalised (the bridge alone without one).

    ``route``: classes an expert decides inside the bridge (the spoken digits); a clip's
    probability mass on them moves its mix to the bridge, since the projection knows only what
    the main network knows, which is far weaker on digits than the expert (see the model card).
    """
    bridged = bridge(logits, label_vectors, temperature, top_k)
    if proj is None or alpha >= 1.0:
        return bridged
    share = np.full((len(logits), 1), alpha, np.float32)
    if route:
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        mass = (p[:, list(route)].sum(axis=1) / p.sum(axis=1))[:, None]
        share = alpha + (1.0 - alpha) * mass
    return l2_normalize(share * bridged + (1.0 - share) * l2_normalize(proj))


def confidence(logits: np.ndarray) -> np.ndarray:
    """The classifier's max softmax probability per window (logits or log-probabilities)."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p.max(axis=1) / p.sum(axis=1)).astype(np.float32)


def off_labels(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The part of ``vectors`` outside the labels' span (``basis``: orthonormal columns),
    unit length; zero rows where nothing is outside it."""
    v = np.atleast_2d(np.asarray(vectors, np.float32))
    rest = v - (v @ basis) @ basis.T
    norm = np.linalg.norm(rest, axis=1, keepdims=True)
    return np.where(norm > 1e-4, rest / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def abstain(vectors: np.ndarray, logits: np.ndarray, proj: np.ndarray | None, basis: np.ndarray,
            neutral: np.ndarray, power: float) -> np.ndarray:
    """Soft abstention: each window keeps ``g = confidence ** power`` of its direction and
    ``sqrt(1 - g^2)`` goes to its off-label direction (its projection's part outside the
    labels' span, else ``neutral``), so its cosine to a label's prompt scales by about ``g``.

    A window with no off-label direction (a text space the labels span whole) is unchanged.
    """
    g = confidence(logits)[:, None] ** power
    off = off_labels(proj, basis) if proj is not None else np.zeros_like(vectors)
    missing = ~off.any(axis=1)
    off[missing] = neutral[0]
    g = np.where(off.any(axis=1, keepdims=True), g, 1.0)
    return l2_normalize(g * vectors + np.sqrt(np.clip(1.0 - g * g, 0.0, 1.0)) * off)


def _batch(waves: list[np.ndarray], length: int, max_gain_db: float | None) -> torch.Tensor:
    """Zero-padded [n, length] batch; each window loudness-normalised first (whole window,
    gain capped at ``max_gain_db``) unless that is None."""
    import torch

    out = np.zeros((len(waves), length), np.float32)
    for row, w in enumerate(waves):
        if max_gain_db is not None:
            w = normalize_loudness(w, max_gain_db)
        out[row, : min(len(w), length)] = w[:length]
    return torch.from_numpy(out)


# loudness normalisation of a window: to this RMS, with at most this gain
TARGET_RMS_DB = -20.0
MAX_GAIN_DB = 30.0


def normalize_loudness(waveform: np.ndarray, max_gain_db: float = MAX_GAIN_DB) -> np.ndarray:
    """Scale to ``TARGET_RMS_DB`` RMS; quiet input gains at most ``max_gain_db`` so that hiss is
    not blown up to speech level."""
    x = np.asarray(waveform, dtype=np.float32)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    if rms <= 0.0:
        return x
    gain_db = min(TARGET_RMS_DB - 20 * math.log10(rms), max_gain_db)
    return (x * 10 ** (gain_db / 20)).astype(np.float32)


def label_embeddings(encoder: Encoder, labels: Sequence[str]) -> np.ndarray:
    """Mean prompt embedding per label in ``encoder``'s text space, cached per encoder id."""
    key = (encoder.id, tuple(labels))
    with _LOCK:
        cached = _PROMPT_CACHE.get(key)
    if cached is not None:
        return cached
    texts = [p for lab in labels for p in prompts(lab)]
    emb = encoder.encode_text(texts).reshape(len(labels), -1, encoder.dim).mean(axis=1)
    vectors = l2_normalize(emb)
    with _LOCK:
        _PROMPT_CACHE[key] = vectors
    return vectors


def neutral_embedding(encoder: Encoder) -> np.ndarray:
    """The mean embedding of ``NEUTRAL_PROMPTS`` in ``encoder``'s text space, cached per id."""
    key = (encoder.id, NEUTRAL_PROMPTS)
    with _LOCK:
        cached = _PROMPT_CACHE.get(key)
    if cached is None:
        cached = l2_normalize(encoder.encode_text(list(NEUTRAL_PROMPTS)).mean(axis=0, keepdims=True))
        with _LOCK:
            _PROMPT_CACHE[key] = cached
    return cached


def _same_space(vectors: np.ndarray, probe: np.ndarray) -> bool:
    if vectors.shape != probe.shape:
        return False
    cos = np.sum(l2_normalize(vectors) * l2_normalize(probe), axis=1)
    return float(cos.min()) >= PROBE_MIN_COS


def read_checkpoint(path: Path) -> AudioCheckpoint:
    """The weights file; raises ``ValueError`` naming what is wrong."""
    return AudioCheckpoint.load(path)


def load_audio_head(encoder: Encoder, path: Path | None = None) -> AudioModel | None:
    """The audio head for ``encoder``, or None (logged) when the weights are missing/mismatched."""
    path = path or shipped_weights()
    try:
        head = AudioModel(read_checkpoint(path), encoder)
        head.fingerprint = f"{head.id}@{file_sha256(path)[:16]}"
        return head
    except ImportError as exc:
        log.warning("audio encoder unavailable: %s; install crossfind's dependencies "
                    "(efficientnet-lite-pytorch, librosa, torch)", exc)
    except (ValueError, KeyError, RuntimeError) as exc:
        log.warning("audio encoder unavailable for %r: %s; reinstall crossfind or retrain with "
                    "`crossfind train-audio --out %s`", encoder.id, exc, path)
    return None
