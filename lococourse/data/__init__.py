"""Data generators (imported at run time): procedural faces with known factors and part masks, image-shaped MoLRG
data, and image files read and written with every conversion explicit."""
from lococourse.data.faces import (
    FACTOR_NAMES,
    FACTOR_PARTS,
    PARTS,
    FaceBatch,
    face_sampler,
    render_faces,
    sample_faces,
    sample_factors,
)
from lococourse.data.molrg_images import load_molrg, molrg_image_model, molrg_sampler, save_molrg

__all__ = ["FACTOR_NAMES", "FACTOR_PARTS", "PARTS", "FaceBatch", "face_sampler", "render_faces", "sample_factors",
           "sample_faces", "load_molrg", "molrg_image_model", "molrg_sampler", "save_molrg"]
