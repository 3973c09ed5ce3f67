"""Data we generate ourselves: procedural cartoon faces, image-shaped MoLRG data, small digits."""
from .faces import FACTOR_NAMES, FACTOR_PARTS, PARTS, FaceBatch, face_sampler, render_faces, sample_factors, sample_faces
from .molrg_images import load_molrg, molrg_image_model, molrg_sampler, save_molrg

__all__ = [
    "FACTOR_NAMES", "FACTOR_PARTS", "PARTS", "FaceBatch", "face_sampler", "render_faces", "sample_factors",
    "sample_faces", "molrg_image_model", "molrg_sampler", "save_molrg", "load_molrg",
]
