"""Probability maps from a DB text detector exported to ONNX, run with onnxruntime.

onnxruntime is an optional dependency (``pip install 'unclip-tuner[onnx]'``); it is imported
when a detector is created, not when this module is imported.

The PP-OCRv4 mobile detector shipped in the ``rapidocr-onnxruntime`` wheel is a trained DBNet
that is handy for real maps without a PyTorch checkpoint. Run it with the ``seed-ppocr`` profile:
the competition's network space (longest side 1024, centred pad to 1024 x 1024, the baseline's
inverse matrix) with PP-OCR's normalisation, so its maps can be decoded exactly like a
competition model's.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .preprocess import Normalisation, Preprocessed, default_input_size, load_image, preprocess

__all__ = [
    "DetectorOutput",
    "OnnxDetector",
    "PPOCR_V4_PACKAGE",
    "PPOCR_V4_RELATIVE_PATH",
    "find_ppocr_v4_model",
]

#: The PyPI distribution that ships the PP-OCRv4 detector, and the model's place inside it.
PPOCR_V4_PACKAGE = "rapidocr_onnxruntime"
PPOCR_V4_RELATIVE_PATH = "models/ch_PP-OCRv4_det_infer.onnx"
_INSTALL_HINT = "pip install --no-deps rapidocr-onnxruntime==1.4.4"


class DetectorOutput(NamedTuple):
    """A probability map with the geometry needed to map it back.

    Attributes
    ----------
    prob : ndarray
        ``(h, w)`` float32 probability map in network space (padding included).
    inverse_matrix : ndarray
        ``(3, 3)`` float64 matrix from network pixels to original image pixels.
    original_size : tuple of int
        ``(W, H)`` of the original image after EXIF orientation.
    """

    prob: np.ndarray
    inverse_matrix: np.ndarray
    original_size: Tuple[int, int]


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "onnxruntime is required to run ONNX detectors: pip install 'unclip-tuner[onnx]' "
            "(or pip install onnxruntime)"
        ) from None
    return onnxruntime


def find_ppocr_v4_model() -> Path:
    """Locate the PP-OCRv4 detector inside an installed ``rapidocr_onnxruntime`` package.

    The package is found without being imported (importing it pulls in its whole OCR stack).

    Returns
    -------
    Path
        Path of ``rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx``.

    Raises
    ------
    FileNotFoundError
        When the package is not installed or does not contain the model.
    """
    spec = importlib.util.find_spec(PPOCR_V4_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            f"the PP-OCRv4 detector needs the {PPOCR_V4_PACKAGE} package: {_INSTALL_HINT} "
            "(or pass the path of an .onnx detector)"
        )
    for location in locations:
        candidate = Path(location) / PPOCR_V4_RELATIVE_PATH
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{PPOCR_V4_PACKAGE} is installed at {locations[0]} but has no {PPOCR_V4_RELATIVE_PATH}; "
        f"reinstall it with: {_INSTALL_HINT}"
    )


class OnnxDetector:
    """Run an ONNX DB detector and return its probability map in network space.

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file. Its first input takes an ``(N, 3, h, w)`` float32 batch; the chosen
        output is ``(N, C, h, w)`` with the probability map in channel 0 (DB exports that
        also return the threshold map put it in channel 1).
    profile : {"seed", "seed-ppocr", "ppocr", "rapidocr"}
        Preprocessing profile (see :mod:`unclip_tuner.models.preprocess`).
    input_size : int, optional
        Profile size parameter; ``None`` takes the profile's default (1024 for ``seed*``).
    normalisation : Normalisation, optional
        Overrides the profile's normalisation.
    output_name : str, optional
        Name of the output holding the probability map; default: the model's first output.
    intra_op_num_threads : int, optional
        onnxruntime intra-op threads; default: onnxruntime's choice (all cores).
    providers : sequence of str, optional
        onnxruntime execution providers; default ``["CPUExecutionProvider"]``.

    Raises
    ------
    ImportError
        When onnxruntime is not installed.
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        For an unknown profile, an unknown output name, or a model onnxruntime cannot load.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        profile: str = "seed",
        input_size: Optional[int] = None,
        normalisation: Optional[Normalisation] = None,
        output_name: Optional[str] = None,
        intra_op_num_threads: Optional[int] = None,
        providers: Optional[Sequence[str]] = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.profile = profile
        self.input_size = default_input_size(profile) if input_size is None else int(input_size)
        self.normalisation = normalisation
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = int(intra_op_num_threads)
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options,
                providers=list(providers) if providers else ["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"onnxruntime cannot load {self.path}: {exc}") from None
        self._input_name = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        if output_name is None:
            output_name = names[0]
        elif output_name not in names:
            raise ValueError(f"{self.path} has no output {output_name!r}; outputs: {names}")
        self._output_name = output_name

    def __repr__(self) -> str:
        return (f"OnnxDetector({str(self.path)!r}, profile={self.profile!r}, "
                f"input_size={self.input_size})")

    def preprocess(self, rgb: np.ndarray) -> Preprocessed:
        """Network input, inverse matrix and original size for an RGB uint8 image."""
        return preprocess(rgb, self.profile, self.input_size, self.normalisation)

    def run(self, network_input: np.ndarray) -> np.ndarray:
        """Run the network on one preprocessed ``(3, h, w)`` input.

        Returns
        -------
        ndarray
            ``(h, w)`` float32 probability map.
        """
        x = np.ascontiguousarray(network_input, dtype=np.float32)[None]
        try:
            (out,) = self._session.run([self._output_name], {self._input_name: x})
        except Exception as exc:
            raise ValueError(
                f"{self.path.name} failed on an input of shape {x.shape[1:]}: {exc}"
            ) from None
        out = np.asarray(out)
        if out.ndim != 4 or out.shape[0] != 1 or out.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"{self.path.name}: output {self._output_name!r} has shape {out.shape}; a "
                f"probability map of shape (1, C, {x.shape[2]}, {x.shape[3]}) was expected"
            )
        prob = np.ascontiguousarray(out[0, 0], dtype=np.float32)
        # onnxruntime's Sigmoid can overshoot 1 (or undershoot 0) by an ulp on saturated
        # pixels; such values are clipped, anything further out is left for the checks
        lo, hi = float(prob.min()), float(prob.max())
        if (hi > 1.0 and hi <= 1.0 + 1e-6) or (lo < 0.0 and lo >= -1e-6):
            if -1e-6 <= lo and hi <= 1.0 + 1e-6:
                np.clip(prob, 0.0, 1.0, out=prob)
        return prob

    def predict(self, image: Union[str, os.PathLike, np.ndarray]) -> DetectorOutput:
        """Probability map of one image.

        Parameters
        ----------
        image : str, path-like or ndarray
            An image file (read with :func:`~unclip_tuner.models.preprocess.load_image`) or an
            ``(H, W, 3)`` uint8 RGB array.

        Returns
        -------
        DetectorOutput
            ``(prob, inverse_matrix, (W, H))``.
        """
        rgb = image if isinstance(image, np.ndarray) else load_image(image)
        net_input, inverse, size = self.preprocess(rgb)
        return DetectorOutput(self.run(net_input), inverse, size)

    __call__ = predict
