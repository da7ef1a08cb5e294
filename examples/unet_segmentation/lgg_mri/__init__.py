"""TFDS builder of the LGG MRI segmentation release; importing it registers ``lgg_mri``."""

from examples.unet_segmentation.lgg_mri.lgg_mri_dataset_builder import Builder

__all__ = ['Builder']
